# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Print markdown tables of the JSON results in bench/results; refill the docs' tables.

    python bench/summarize.py          # print every table
    python bench/summarize.py --docs   # rewrite the generated blocks of docs/*.md
"""

import json
from pathlib import Path
import re
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.closed_loop import recorded_schedule  # noqa: E402
from bench.common import RESULTS  # noqa: E402


def _load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def kernels_table(data, key, label):
    """Return a markdown table of one kernels-*.json for the QVLA-like 4.0-bit mix."""
    ms = sorted({c['M'] for c in data['cases']})
    lines = [f'{label} ({data["device"]}, torch {data["torch"]}), mix qvla4.0 '
             '(20 % 8-bit, 45 % 4-bit, 30 % 2-bit, 5 % pruned):', '',
             '| shape (N x K) | bytes / fp16 | ' + ' | '.join(f'M={m}' for m in ms) + ' |',
             '|---|---|' + '---|' * len(ms)]
    shapes = []
    for c in data['cases']:
        if c['mix'] == 'qvla4.0' and c['shape'] not in shapes:
            shapes.append(c['shape'])
    for s in shapes:
        cases = {c['M']: c for c in data['cases'] if c['shape'] == s and c['mix'] == 'qvla4.0'}
        first = next(iter(cases.values()))
        lines.append(f'| {s} ({first["N"]}x{first["K"]}) | {first["packed_over_fp16"]:.3f} | '
                     + ' | '.join(f'{cases[m][key]:.2f}' if key in cases.get(m, {}) else '-'
                                  for m in ms)
                     + ' |')
    return '\n'.join(lines)


def model_line(name: str, d: dict) -> str:
    """Return one sentence about a gpu-model-*.json (eager, decode and graph latencies)."""
    b, q = d['bf16'], d['quantized']
    line = (f'`{name}`: Llama-2-7B-shaped forward, {d["tokens"]} tokens, {d["device"]}: bf16 '
            f'{b["latency_ms"]:.1f} ms, peak {b["peak_bytes"] / 2**30:.2f} GiB; QVLA-like '
            f'{d["avg_bits_per_param"]:.2f} bits {q["latency_ms"]:.1f} ms, peak '
            f'{q["peak_bytes"] / 2**30:.2f} GiB (peak ratio {d["peak_ratio"]:.3f}, speed-up '
            f'{d["speedup"]:.2f}x)')
    if d.get('decode_tokens'):
        line += (f'; {d["decode_tokens"]}-token forward: bf16 {b["decode"]["latency_ms"]:.1f} '
                 f'ms, quantized {q["decode"]["latency_ms"]:.1f} ms ({d["decode_speedup"]:.2f}x)')
    if 'graph_speedup' in d:
        line += (f'; CUDA-graph replay: {d["tokens"]} tokens {b["graph_latency_ms"]:.1f} vs '
                 f'{q["graph_latency_ms"]:.1f} ms ({d["graph_speedup"]:.2f}x)')
    if 'decode_graph_speedup' in d:
        line += (f', {d["decode_tokens"]} token {b["decode"]["graph_latency_ms"]:.2f} vs '
                 f'{q["decode"]["graph_latency_ms"]:.2f} ms ({d["decode_graph_speedup"]:.2f}x)')
    return line


def upstream_load_line(d: dict) -> str:
    """Return one sentence about bench/results/upstream_load.json."""
    llm = d['llm']
    line = (f'`{d["command"]}` (commit {d["commit"]}, {d["device"]}): a '
            f'{d["checkpoint_bytes"] / 1e9:.2f} GB bf16 OFT folder (Llama of {llm["layers"]} '
            f'layers x {llm["hidden"]}, 3 shards) loaded in {d["seconds"]:.1f} s; loading it '
            'and reading every weight raised the process RSS by '
            f'{(d["peak_rss"] - d["baseline_rss"]) / 1e9:.2f} GB, '
            f'{d["load_over_checkpoint"]:.2f}x the checkpoint (goal <= {d["goal"]}x); the peak '
            f'RSS was {d["peak_rss"] / 1e9:.2f} GB, {d["baseline_rss"] / 1e9:.2f} GB of it '
            'Python, torch and transformers before loading.')
    base = d.get('baseline_loader')
    if base:
        line += (f' The loader of commit {base["commit"]} (float32 build, then cast) raised it '
                 f'by {(base["peak_rss"] - base["baseline_rss"]) / 1e9:.2f} GB '
                 f'({base["load_over_checkpoint"]:.2f}x) in {base["seconds"]:.1f} s.')
    return line


def faults_table(data: dict) -> str:
    """Return the markdown summary of bench/results/faults.json (the fault campaign)."""
    lines = [f'Fault campaign, `{data["command"]}` (commit {data["commit"]}, '
             f'{data["device"]}, {data["seconds"] / 60:.0f} min):', '',
             '| stop path | tried | zero twist last | node processes left | tracebacks |',
             '|---|---|---|---|---|']
    for path, v in data['stops'].items():
        left = v['orphans'] if path.startswith('runner') else '-'  # counted for the runner
        lines.append(f'| {path} | {v["tried"]} | {v["zero_twist_last"]} | {left} | '
                     f'{v["tracebacks"]} |')
    art = data['artifacts'].values()
    lines += ['', f'Damaged artifacts and outputs: {len(data["artifacts"])} cases, '
              f'{sum(a["one_line"] for a in art)} ended in one line (exit 2), '
              f'{sum(a["traceback"] for a in art)} in a traceback.', '',
              '| writers | tried | episodes lost | duplicated | unreadable |',
              '|---|---|---|---|---|']
    for name, v in data['writers'].items():
        lines.append(f'| {name.replace("_", " ")} | {v["tried"]} | {v["episodes_lost"]} | '
                     f'{v["duplicates"]} | {v["unreadable"]} |')
    c = data['writers']['concurrent_collect']
    lines += ['', f'The second concurrent collection was refused with one line in '
              f'{c["second_refused_one_line"]} of {c["tried"]} tries. Goals: '
              + ', '.join(f'{k.replace("_", " ")}: {"met" if v else "MISSED"}'
                          for k, v in data['goals'].items()) + '.']
    return '\n'.join(lines)


# Blocks of docs/*.md generated from bench/results: <!-- bench:NAME --> ... <!-- /bench -->
BLOCKS = {'faults': lambda: faults_table(_load('faults.json')),
          'upstream_load': lambda: upstream_load_line(_load('upstream_load.json'))}
DOCS = Path(__file__).resolve().parents[1] / 'docs'
BLOCK = re.compile(r'(<!-- bench:(\w+) -->\n).*?(<!-- /bench -->)', re.S)


def render_docs(text: str) -> str:
    """Return ``text`` with every generated block refilled from bench/results."""
    def fill(m):
        if m.group(2) not in BLOCKS:
            raise ValueError(f'unknown generated block {m.group(2)!r}; expected one of '
                             f'{sorted(BLOCKS)}')
        return m.group(1) + BLOCKS[m.group(2)]() + '\n' + m.group(3)
    return BLOCK.sub(fill, text)


def write_docs(check: bool = False) -> list:
    """Refill the generated blocks of docs/*.md; with ``check``, return the stale pages."""
    from qvla_ros.storage.atomic import write_text
    stale = []
    for page in sorted(DOCS.glob('*.md')):
        text = page.read_text()
        new = render_docs(text)
        if new != text:
            stale.append(page.name)
            if not check:
                write_text(page, new)
    return stale


def main() -> int:
    """Print every table whose results exist (--docs: refill the tables in docs/*.md)."""
    if '--docs' in sys.argv[1:]:
        print('\n'.join(f'updated docs/{p}' for p in write_docs()) or 'docs up to date')
        return 0
    for path in sorted(RESULTS.glob('kernels-*.json')):
        data = json.loads(path.read_text())
        print(kernels_table(data, 'mixed_over_fp32',
                            'CPU, 2 threads: packed time / fp32 F.linear time (lower is better)'))
        print()
        if any('mixed_fp32_compute_over_fp32' in c for c in data['cases']):
            print(kernels_table(data, 'mixed_fp32_compute_over_fp32',
                                'CPU, 2 threads, computing in float32 instead of the bf16 '
                                'default above M=16: packed time / fp32 F.linear time'))
            print()
    for path in sorted(RESULTS.glob('gpu-kernels-*.json')):
        data = json.loads(path.read_text())
        for key, how in (('speedup_vs_fp16', 'eager, launch overhead included'),
                         ('graph_speedup_vs_fp16', 'CUDA-graph replay, device time')):
            if all(key in c for c in data['cases']):
                print(f'`{path.name}`: ' + kernels_table(
                    data, key, f'GPU, {how}: fp16 cuBLAS time / packed time, measured path '
                    '(higher is better)'))
                print()
    for path in sorted(RESULTS.glob('gpu-model-*.json')):
        print(model_line(path.name, json.loads(path.read_text())) + '\n')
    alloc = _load('allocation.json')
    if alloc:
        o = alloc['openvla_sized']
        times = ', '.join(f'{t} bits: {v["seconds"]:.1f} s' for t, v in o['greedy'].items())
        gaps = [g['relative_gap'] for g in alloc['optimality_gap']]
        print(f'Allocation: {o["rows"]} rows x {o["levels"]} levels ({times}); greedy vs '
              f'Lagrangian lower bound on {len(gaps)} synthetic instances: max gap '
              f'{100 * max(gaps):.2f} %\n')
    models = _load('models.json')
    if models:
        print('qvla-ref: ' + ', '.join(f'{k} {v["total"] / 1e6:.2f} M params ({v["tokens"]} '
                                       'tokens)' for k, v in models['params'].items())
              + f'; small policy step on {models["threads"]} threads: fp32 '
              f'{models["small_step_fp32"]["median_ms"]:.1f} ms, bf16 autocast '
              f'{models["small_step_bf16"]["median_ms"]:.1f} ms; training '
              f'{models["train_samples_per_s_small_bf16"]:.1f} samples/s\n')
    faults = _load('faults.json')
    if faults:
        print(faults_table(faults) + '\n')
    soak = _load('ros_soak.json')
    if soak:
        print(f'ROS soak, {soak["minutes"]} min, 30 Hz camera, 10 Hz control, '
              f'{soak["bad_messages_sent"]} malformed messages mixed in: node alive '
              f'{soak["node_alive_at_end"]}, missed ticks '
              f'{100 * soak["missed_tick_fraction"]:.2f} %, RSS growth '
              f'{100 * soak["rss_growth_fraction"]:.2f} %, status counts '
              f'{soak["status_counts"]}\n')
    sens = _load('sensitivity.json')
    if sens:
        print(f'Sensitivity, {sens["model"]} ({sens["rows"]} rows, {sens["samples"]} samples): '
              'Spearman(proxy, exact) by bits')
        print('\n| method | ' + ' | '.join(f'{b} bits' for b in sens['bits']) + ' | seconds |')
        print('|---|' + '---|' * (len(sens['bits']) + 1))
        for key in ('proxy_k4', 'proxy_k16', 'proxy_k64', 'hybrid_k16_refine0.05'):
            rho = sens[key]['spearman']
            print(f'| {key} | ' + ' | '.join(f'{rho[str(b)]["all"]:.3f}' for b in sens['bits'])
                  + f' | {sens[key]["seconds"]:.2f} |')
        print(f'| exact | 1 | 1 | 1 | 1 | {sens["exact_seconds"]:.2f} |')
    for path in sorted(RESULTS.glob('schedule_*.json')):
        data = json.loads(path.read_text())
        print(f'\nChunk schedule, {data["meta"]["suite"]}, `{data["meta"]["command"]}` '
              f'({data["meta"]["device"]}):\n')
        print('| actions executed per chunk | success | Wilson 95 % | by task |')
        print('|---|---|---|---|')
        for r in data['rows']:
            lo, hi = r['wilson95']
            tasks = ', '.join(f'{t} {s}/{n}' for t, (s, n) in r['by_task'].items())
            print(f'| {r["execute_steps"]} | {r["successes"]}/{r["episodes"]} | '
                  f'{100 * lo:.0f}-{100 * hi:.0f} % | {tasks} |')
    for path in sorted(RESULTS.glob('closed_loop_*.md')):
        data = json.loads(path.with_suffix('.json').read_text())
        runs = data['meta'].get('commands') or [data['meta']['command']]
        steps = recorded_schedule(data['meta'])
        fp = data['fp']
        refreshed = (f'; the FP row re-evaluated at commit {fp["commit"]} on {fp["device"]}, '
                     f'which before measured {fp["previous"]["successes"]}/'
                     f'{fp["previous"]["episodes"]}' if fp.get('previous') else '')
        print(f'\nClosed loop, `{path.name}` ({data["meta"]["device"]}; {steps} actions '
              'executed per chunk), rows from ' + ', then '.join(f'`{c}`' for c in runs)
              + refreshed + ':\n')
        print(path.read_text())
    return 0


if __name__ == '__main__':
    sys.exit(main())
