# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The closed-loop blocks of bench/summarize.py: the per-suite tables, the headline and goals.

Each function reads the closed_loop_<suite>.json (and .md) files of a results folder, so the
goals' met / missed are computed from the committed results, never typed.
"""

import itertools
import json
from pathlib import Path
import re
import sys
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.closed_loop import fp_successes_on, percent_of_fp, recorded_schedule  # noqa: E402
from qvla_ros.quant.activation import ROTATIONS as A4_ROTATIONS  # noqa: E402

# Closed-loop goals (issue tracker): FP success by suite, and the share of FP kept by QVLA.
FP_GOALS = {'tabletop': 0.95, 'metaworld': 0.85}
KEEP_GOALS = {4.0: 98.9, 3.0: 95.0}
A4_KEEP = 95.0  # QVLA W4A4: % of FP success kept
# Meta-World tasks that need a precise 3-D point, each to be solved by FP at this rate.
PRECISE_TASKS = ('reach-v3', 'push-v3', 'pick-place-v3', 'peg-insert-side-v3')
PRECISE_GOAL = 0.5


def load(results: Path, name: str) -> Optional[dict]:
    """Return the JSON result file ``name`` of the folder ``results``, None when absent."""
    path = results / name
    return json.loads(path.read_text()) if path.is_file() else None


def closed_loop_block(results: Path, suite: str) -> Optional[str]:
    """Return the closed-loop comparison of one suite: its source line and table."""
    data = load(results, f'closed_loop_{suite}.json')
    if data is None:
        return None
    meta, fp = data['meta'], data['fp']
    runs = meta.get('commands') or [meta['command']]
    refreshed = (f'; the FP row was re-evaluated at commit {fp["commit"]} on {fp["device"]}, '
                 f'which before measured {fp["previous"]["successes"]}/'
                 f'{fp["previous"]["episodes"]}' if fp.get('previous') else '')
    table = (results / f'closed_loop_{suite}.md').read_text().rstrip()
    return (f'`{meta["checkpoint"]}` (weights sha256 {meta["checkpoint_sha256"]}), seeds '
            f'{meta["eval_seeds"][0]}-{meta["eval_seeds"][1] - 1}, '
            f'{recorded_schedule(meta)} actions executed per chunk, last run on '
            f'{meta["device"]}; rows '
            'from ' + ', then '.join(f'`{c}`' for c in runs) + refreshed + '.\n\n' + table
            + _sensitivity_seconds(meta))


def _sensitivity_seconds(meta: dict) -> str:
    """Return the sensitivity wall times of a closed-loop file, by calibration samples."""
    def name(kind: str) -> str:  # exact measures every row: its refine fraction is unused
        kind = kind.removeprefix('sensitivity_')
        return re.sub(r'@refine=[^@]*', '', kind) if kind.startswith('exact') else kind
    parts = [f'{name(kind)} on {samples} samples {sec:.0f} s'
             for samples, steps in sorted(meta.get('calibration_seconds', {}).items(),
                                          key=lambda kv: -int(kv[0]))
             for kind, sec in steps.items() if kind.startswith('sensitivity_')]
    return ('\n\nSensitivity wall time (`exact`: every row; `hybrid@refine=F`: the proxy, '
            'with the fraction F of rows measured exactly; `@gptq`: with GPTQ rounding): '
            + '; '.join(parts) + '.') if parts else ''


def _cell(data: dict, method: str, bits: float, act: Optional[int] = None,
          tag: str = '') -> Optional[dict]:
    return next((r for r in data['rows'] if r['method'] == method and r['target_bits'] == bits
                 and r.get('act_bits') == act and r.get('tag', '') == tag), None)


def _wilson(r: dict) -> str:
    lo, hi = r['wilson95']
    return f'{r["successes"]}/{r["episodes"]} ({100 * lo:.0f}-{100 * hi:.0f} %)'


def a4_goal_lines(suite: str, data: dict) -> List[str]:
    """Return the W4A4 goal lines of one suite.

    QVLA under each rotation keeps A4_KEEP % of FP with the lowest action deviation of all
    the W4A4 cells; SmoothQuant and RTN beside it with Wilson intervals; the rotation ablation.
    """
    fp, out = data['fp'], []
    a4 = [r for r in data['rows'] if r.get('act_bits') == 4 and r['target_bits'] == 4.0]
    best = min(a4, key=lambda r: r['mean_deviation'], default=None)
    rotated = [(m, t, _cell(data, m, 4.0, 4, t)) for m in ('qvla', 'qvla-gptq')
               for t in A4_ROTATIONS]
    others = [r for r in a4 if not r['method'].startswith('qvla')]
    for method, tag, r in rotated:
        if r is None or best is None:
            continue
        kept = percent_of_fp(r, fp)
        # the deviation goal is judged only against other methods' cells
        verdict = ('**met**' if best is r else '**missed**') if others else \
            'not judged: no other method has a W4A4 cell yet'
        out.append(f'* {suite} {method} W4A4 ({tag}) keeps >= {A4_KEEP:g} % of FP: '
                   f'{r["successes"]}/{r["episodes"]} against FP\'s '
                   f'{fp_successes_on(fp, r["episodes"]):.0f}, {kept:.2f} %, '
                   f'**{"met" if kept >= A4_KEEP else "missed"}**; lowest action deviation '
                   f'of the {len(a4)} W4A4 cells ({r["mean_deviation"]:.4f}; lowest '
                   f'{_label(best)} {best["mean_deviation"]:.4f}): {verdict}')
    ours = [(t, r) for m, t, r in rotated if m == 'qvla' and r is not None]
    baselines = [(m, _cell(data, m, 4.0, 4)) for m in ('smoothquant', 'rtn')]
    if ours and all(r for _, r in baselines):
        out.append(f'* {suite} W4A4 with Wilson 95 % intervals: '
                   + ', '.join(f'qvla {t} {_wilson(r)}' for t, r in ours) + ', '
                   + ', '.join(f'{m} {_wilson(r)}' for m, r in baselines))
    plain = _cell(data, 'qvla', 4.0, 4)
    if ours and plain is not None:
        out.append(f'* {suite} rotation ablation, qvla W4A4: '
                   + '; '.join(f'{t} {_wilson(r)}, deviation {r["mean_deviation"]:.4f}'
                               for t, r in ours)
                   + f'; not rotated {_wilson(plain)}, deviation '
                   f'{plain["mean_deviation"]:.4f}')
    return out


def _label(row: dict) -> str:
    return row['method'] + (f' ({row["tag"]})' if row.get('tag') else '')


def headline_block(results: Path) -> Optional[str]:
    """Return the README's table: FP and QVLA-GPTQ / QVLA / GPTQ at 4 and 3 bits per suite."""
    cols = [('qvla-gptq', 4.0), ('qvla-gptq', 3.0), ('qvla', 4.0), ('gptq', 4.0)]
    lines = ['| suite | FP | ' + ' | '.join(f'{m} W{b:g}' for m, b in cols) + ' |',
             '|---|---|' + '---|' * len(cols)]
    found = False
    for suite in ('tabletop', 'metaworld'):
        data = load(results, f'closed_loop_{suite}.json')
        if data is None:
            continue
        found, fp = True, data['fp']
        cells = []
        for method, bits in cols:
            r = _cell(data, method, bits)
            cells.append('-' if r is None else
                         f'{r["successes"]}/{r["episodes"]} ({percent_of_fp(r, fp):.0f} % of '
                         f'FP; {r["real_bits_per_param"]:.2f} bits)')
        lines.append(f'| {suite} | {fp["successes"]}/{fp["episodes"]} | ' + ' | '.join(cells)
                     + ' |')
    return '\n'.join(lines) if found else None


def goals_block(results: Path) -> Optional[str]:
    """Return the closed-loop goals with met / missed computed from the result files."""
    lines = []
    for suite, goal in FP_GOALS.items():
        data = load(results, f'closed_loop_{suite}.json')
        if data is None:
            continue
        fp = data['fp']
        met = fp['success_rate'] >= goal
        lines.append(f'* {suite} FP success >= {100 * goal:.0f} %: {fp["successes"]}/'
                     f'{fp["episodes"]}, **{"met" if met else "missed"}**')
        tasks = {t: fp.get('by_task', {}).get(t) for t in PRECISE_TASKS}
        if suite == 'metaworld' and all(tasks.values()):
            each = ', '.join(f'{t} {s}/{n}' for t, (s, n) in tasks.items())
            met = all(s >= PRECISE_GOAL * n for s, n in tasks.values())
            lines.append(f'* metaworld FP on each precise-point task >= '
                         f'{100 * PRECISE_GOAL:.0f} %: {each}, **{"met" if met else "missed"}**')
        for (bits, keep), method in itertools.product(KEEP_GOALS.items(), ('qvla-gptq', 'qvla')):
            r = _cell(data, method, bits)
            if r is None:
                continue
            kept = percent_of_fp(r, fp)
            lines.append(f'* {suite} {method} W{bits:g} keeps >= {keep} % of FP: '
                         f'{r["successes"]}/{r["episodes"]} against FP\'s '
                         f'{fp_successes_on(fp, r["episodes"]):.0f} on the same seeds, '
                         f'{kept:.2f} %, **{"met" if kept >= keep else "missed"}**')
        lines += a4_goal_lines(suite, data)
    return '\n'.join(lines) or None
