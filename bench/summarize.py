# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Markdown from the JSON results in bench/results: one named block per result.

    python bench/summarize.py          # print every block whose results exist
    python scripts/docs.py             # refill the generated blocks of README.md and docs/

Each block is a function of the result files alone, so every number in the docs can be traced
to a result file and the command it records.
"""

import json
from pathlib import Path
import sys
from typing import Callable, Dict, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS  # noqa: E402
from bench.summary_closed_loop import (  # noqa: E402
    closed_loop_block, goals_block, headline_block, load)


def _load(name: str) -> Optional[dict]:
    return load(RESULTS, name)


def _source(data: dict) -> str:
    """Return '`command` (commit, device)' of a result file."""
    meta = data.get('meta', data)
    return f'`{meta["command"]}` (commit {meta["commit"]}, {meta["device"]})'


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


def kernels_cpu_block() -> Optional[str]:
    """Return the CPU kernel tables of every kernels-*.json."""
    out = []
    for path in sorted(RESULTS.glob('kernels-*.json')):
        data = json.loads(path.read_text())
        out.append(f'`{path.name}`, {_source(data)}. ' + kernels_table(
            data, 'mixed_over_fp32',
            'CPU, 2 threads: packed time / fp32 F.linear time (lower is better)'))
        if any('mixed_fp32_compute_over_fp32' in c for c in data['cases']):
            out.append(kernels_table(data, 'mixed_fp32_compute_over_fp32',
                                     'CPU, 2 threads, computing in float32 instead of the '
                                     'bf16 default above M=16: packed time / fp32 F.linear '
                                     'time'))
    return '\n\n'.join(out) or None


def kernels_gpu_block() -> Optional[str]:
    """Return the GPU kernel tables, model lines and GPU test counts."""
    out = []
    for path in sorted(RESULTS.glob('gpu-kernels-*.json')):
        data = json.loads(path.read_text())
        for key, how in (('speedup_vs_fp16', 'eager, launch overhead included'),
                         ('graph_speedup_vs_fp16', 'CUDA-graph replay, device time')):
            if all(key in c for c in data['cases']):
                out.append(f'`{path.name}`: ' + kernels_table(
                    data, key, f'GPU, {how}: fp16 cuBLAS time / packed time, measured path '
                    '(higher is better)'))
    for path in sorted(RESULTS.glob('gpu-model-*.json')):
        out.append(model_line(path.name, json.loads(path.read_text())))
    for path in sorted(RESULTS.glob('gpu-tests-*.json')):
        d = json.loads(path.read_text())
        out.append(f'`{path.name}`: `{d["command"]}` on {d["device"]}: {d["tests"]} tests, '
                   f'{d["failures"]} failures, {d["errors"]} errors, {d["skipped"]} skipped.')
    return '\n\n'.join(out) or None


def allocation_block() -> Optional[str]:
    """Return allocation time at OpenVLA size and the greedy's gap to the lower bound."""
    d = _load('allocation.json')
    if d is None:
        return None
    o = d['openvla_sized']
    times = ', '.join(f'{t} bits: {v["seconds"]:.1f} s' for t, v in o['greedy'].items())
    gaps = [g['relative_gap'] for g in d['optimality_gap']]
    return (f'{_source(d)}: an OpenVLA-sized instance, {o["rows"]} rows x {o["levels"]} levels '
            f'({times}; goal {o["goal_seconds"]} s); greedy against the Lagrangian lower bound on '
            f'{len(gaps)} synthetic instances: max gap {100 * max(gaps):.2f} %.')


def _spearman_table(d: dict, keys) -> str:
    lines = ['| measurement | ' + ' | '.join(f'{b} bits' for b in d['bits'])
             + ' | proxy sum / exact sum | seconds |', '|---|' + '---|' * (len(d['bits']) + 2)]
    for key in keys:
        if key not in d:
            continue
        rho, ratio = d[key]['spearman'], d[key].get('sum_ratio_proxy_over_exact')
        sums = (', '.join(f'{float(ratio[str(b)]):.2f}' for b in d['bits']) if ratio else '-')
        lines.append(f'| {key} | ' + ' | '.join(f'{rho[str(b)]["all"]:.3f}' for b in d['bits'])
                     + f' | {sums} | {d[key]["seconds"]:.1f} |')
    lines.append(f'| exact ({d.get("exact_rows", d["rows"])} rows) | '
                 + ' | '.join('1' for _ in d['bits']) + f' | 1 | {d["exact_seconds"]:.1f} |')
    return '\n'.join(lines)


def sensitivity_block() -> Optional[str]:
    """Return the proxy-against-exact rank correlations (random and trained models)."""
    out = []
    keys = ('proxy_k4', 'proxy_k16', 'proxy_k64', 'hybrid_k16_refine0.05')
    for name in ('sensitivity.json', 'sensitivity_metaworld.json'):
        d = _load(name)
        if d:
            out.append(f'`{name}`, {_source(d)}: model `{d["model"]}`, {d["rows"]} rows, '
                       f'{d["samples"]} samples; Spearman of the proxy against exact '
                       'sensitivity over the rows, by bits:\n\n' + _spearman_table(d, keys))
    return '\n\n'.join(out) or None


def sensitivity_scale_block() -> Optional[str]:
    """Return exact sensitivity on 1 and 2 Ray workers and the 7B projection."""
    d = _load('sensitivity_scale.json')
    if d is None:
        return None
    s, p = d['seconds'], d['projection_7b']
    lines = [f'{_source(d)}: {d["shards"]} shards of {d["rows_per_shard"]} rows of `{d["model"]}`'
             f' at 4 bits, {d["samples"]} calibration samples; scores bit-equal across the ways: '
             f'{d["bit_equal"]}.', '', '| way | seconds |', '|---|---|']
    lines += [f'| {k.replace("_", " ")} | {v:.1f} |' for k, v in s.items()]
    lines += ['', f'Speed-up of 2 workers over 1: {d["speedup_2_over_1_worker"]:.2f}x once '
              f'started, {d["speedup_with_warm_up"]:.2f}x with their start-up (goal '
              f'{d["goal_speedup"]}x); Ray overhead per shard against the one-thread process: '
              f'{1e3 * d["ray_overhead_s_per_shard"]:.0f} ms.', '',
              f'Projected exact pass of an OpenVLA-sized model ({p["rows"]} rows x '
              f'{p["widths"]} widths x {p["samples"]} samples, one bf16 forward each at '
              f'{1e3 * p["forward_s_per_sample"]:.1f} ms from `{p["forward_source"]}`): '
              + ', '.join(f'{n} GPU{"s" if n != "1" else ""} {p["gpu_hours"][n]:,.0f} h'
                          for n in sorted(p['gpu_hours'], key=int))
              + ' (single-sample forwards; batched ones would be faster per sample).']
    return '\n'.join(lines)


def schedule_block() -> Optional[str]:
    """Return closed-loop success against actions executed per chunk."""
    out = []
    for path in sorted(RESULTS.glob('schedule_*.json')):
        d = json.loads(path.read_text())
        m = d['meta']
        lines = [f'{m["suite"]}, `{m["checkpoint"]}` (weights sha256 '
                 f'{m.get("checkpoint_sha256", "?")}), {_source(d)}, seeds {m["seeds"]}:', '',
                 '| actions executed per chunk | success | Wilson 95 % | by task |',
                 '|---|---|---|---|']
        for r in d['rows']:
            lo, hi = r['wilson95']
            tasks = ', '.join(f'{t} {s}/{n}' for t, (s, n) in r['by_task'].items())
            lines.append(f'| {r["execute_steps"]} | {r["successes"]}/{r["episodes"]} | '
                         f'{100 * lo:.0f}-{100 * hi:.0f} % | {tasks} |')
        out.append('\n'.join(lines))
    return '\n\n'.join(out) or None


def ros_latency_block() -> Optional[str]:
    """Return policy_node's overhead per frame and step, by camera setup."""
    d = _load('ros_latency.json')
    if d is None or 'cases' not in d:
        return None
    keys = ('image_callbacks', 'inference_step_without_model', 'control_tick',
            'frame_to_publish_overhead')
    lines = [f'{_source(d)}, {d["image_size"]} px frames, model excluded (p50 / p99 ms; goal: '
             f'frame to publish p99 <= {d["goal_p99_ms"]} ms):', '',
             '| cameras | ' + ' | '.join(k.replace('_', ' ') for k in keys) + ' |',
             '|---|' + '---|' * len(keys)]
    for name, case in d['cases'].items():
        lines.append(f'| {name} | ' + ' | '.join(
            f'{case[k]["p50_ms"]:.2f} / {case[k]["p99_ms"]:.2f}' for k in keys) + ' |')
    return '\n'.join(lines)


def ros_soak_block() -> Optional[str]:
    """Return the soak test's one-line summary."""
    s = _load('ros_soak.json')
    if s is None:
        return None
    return (f'{_source(s)}: {s["minutes"]:g} min, 30 Hz camera, 10 Hz control, '
            f'{s["bad_messages_sent"]} malformed messages mixed in: node alive at the end '
            f'{s["node_alive_at_end"]}, missed ticks {100 * s["missed_tick_fraction"]:.4f} %, '
            f'RSS growth {100 * s["rss_growth_fraction"]:.2f} %, status counts '
            f'{s["status_counts"]}.')


def models_block() -> Optional[str]:
    """Return qvla-ref sizes, CPU step time and training throughput."""
    m = _load('models.json')
    if m is None:
        return None
    return (f'{_source(m)}: ' + ', '.join(
        f'{k} {v["total"] / 1e6:.2f} M params ({v["tokens"]} tokens)'
        for k, v in m['params'].items())
        + f'; small policy step on {m["threads"]} threads: fp32 '
        f'{m["small_step_fp32"]["median_ms"]:.1f} ms, bf16 autocast '
        f'{m["small_step_bf16"]["median_ms"]:.1f} ms; training '
        f'{m["train_samples_per_s_small_bf16"]:.1f} samples/s.')


def input_use_block() -> Optional[str]:
    """Return how far each proprio input moves each checkpoint's actions."""
    out = []
    for path in sorted(RESULTS.glob('input_use_*.json')):
        d = json.loads(path.read_text())
        dims = max(len(r['use']) for r in d['rows'])
        lines = [f'`{path.name}`, {_source(d)}, {d["meta"]["frames"]} frames: action change '
                 'when one proprio input is perturbed (normalized units):', '',
                 '| checkpoint | ' + ' | '.join(f'input {i}' for i in range(dims)) + ' |',
                 '|---|' + '---|' * dims]
        for r in d['rows']:
            lines.append(f'| `{r["checkpoint"]}` ({r["checkpoint_sha256"]}) | '
                         + ' | '.join(f'{u:.3f}' for u in r['use']) + ' |')
        out.append('\n'.join(lines))
    return '\n\n'.join(out) or None


def activations_block() -> Optional[str]:
    """Return the action deviation of low-bit activations, rotated or not, per suite."""
    out = []
    for path in sorted(RESULTS.glob('activations_*.json')):
        d = json.loads(path.read_text())
        clips = sorted({r['clip'] for r in d['rows'] if r['weights'] == 16}, reverse=True)
        lines = [f'`{path.name}`, {_source(d)}, `{d["meta"]["checkpoint"]}` '
                 f'({d["meta"]["checkpoint_sha256"]}), {d["meta"]["frames"]} frames: mean '
                 'squared action deviation from FP (normalized units, x 1e-6):', '',
                 '| quantized | rotation | ' + ' | '.join(f'clip {c:g}' for c in clips) + ' |',
                 '|---|---|' + '---|' * len(clips)]
        cells = {(r['weights'], r['act_bits'], r['rotation'], r['clip']): r['deviation']
                 for r in d['rows']}
        for w, a in sorted({(r['weights'], r['act_bits']) for r in d['rows']}, reverse=True):
            for rot in sorted({r['rotation'] for r in d['rows']}, key=lambda r: (r or '', )):
                if (w, a, rot) not in {k[:3] for k in cells}:
                    continue
                vals = [cells.get((w, a, rot, c)) for c in clips]
                lines.append(f'| W{w}A{a} | {rot or "none"} | ' + ' | '.join(
                    '-' if v is None else f'{1e6 * v:.0f}' for v in vals) + ' |')
        t = d['timing']
        online = {'rotated': "every quantized layer's input rotated online",
                  'hadamard': "every quantized layer's input rotated online",
                  'quarot': 'the residual rotation folded (o_proj, down_proj and the vision '
                  'layers rotate online)'}
        lines += ['', f'One policy step on {t["threads"]} thread(s): FP {t["fp_ms"]:.1f} ms; ' +
                  '; '.join(f'{text} {t[k + "_ms"]:.1f} ms ({t[k + "_ms"] / t["fp_ms"]:.2f} x)'
                            for k, text in online.items() if k + '_ms' in t) + '.']
        out.append('\n'.join(lines))
    return '\n\n'.join(out) or None


def rotation_ptx_block() -> Optional[str]:
    """Return one sentence per target about bench/results/ptx-rotation.json."""
    d = _load('ptx-rotation.json')
    if d is None:
        return None
    parts = [f'block {c["block"]} on {c["arch"]} (tile {c["tile"][0]}x{c["tile"][1]}, '
             f'{c["num_warps"]} warps): {c["registers"]} registers, '
             f'{c["spill_store_bytes"]} B spilled, {c["shared_bytes"] // 1024} KiB shared'
             for c in d['cases']]
    return (f'`{d["command"]}` (commit {d["commit"]}, triton {d["triton"]}, compiled on a CPU): '
            + '; '.join(parts) + '.')


def _spills(cases: list) -> str:
    spilled = [c['spill_store_bytes'] for c in cases if c['spill_store_bytes']]
    most = f' (at most {max(spilled)} B)' if spilled else ''
    return f'{len(spilled)}/{len(cases)}{most}'


def mixed_ptx_block() -> Optional[str]:
    """Return one sentence per (target, tokens) about bench/results/ptx-mixed.json."""
    d = _load('ptx-mixed.json')
    if d is None:
        return None
    parts = []
    for arch in dict.fromkeys(c['arch'] for c in d['cases']):
        for tokens, label in (('fp16', 'fp16 tokens'), ('i8', 'int8 tokens')):
            cases = [c for c in d['cases'] if c['arch'] == arch and c['tokens'] == tokens]
            widths = list(dict.fromkeys(c.get('width', 0) for c in cases))
            quant = [c for c in cases if c.get('width') not in (0, 16, None)]
            kinds = sorted({m.split('.')[-2] for c in quant or cases for m in c['mma']})
            per = ', '.join(f'{w}-bit {_spills([c for c in cases if c.get("width") == w])}'
                            for w in widths if w)
            one = [c for c in cases if not c.get('width')]
            text = (f"{arch}, {label}: quantized groups' MMA operands "
                    f'{"/".join(kinds) or "none"}; tiles that spill, one launch for all groups '
                    f'{_spills(one)}')
            parts.append(text + (f', a launch per group {per}' if per else ''))
    return (f'`{d["command"]}` (commit {d["commit"]}, triton {d["triton"]}, compiled on a CPU): '
            + '; '.join(parts) + '.')


BLOCKS: Dict[str, Callable[[], Optional[str]]] = {
    'headline': lambda: headline_block(RESULTS),
    'goals': lambda: goals_block(RESULTS),
    'closed_loop_tabletop': lambda: closed_loop_block(RESULTS, 'tabletop'),
    'closed_loop_metaworld': lambda: closed_loop_block(RESULTS, 'metaworld'),
    'kernels_cpu': kernels_cpu_block,
    'kernels_gpu': kernels_gpu_block,
    'allocation': allocation_block,
    'sensitivity': sensitivity_block,
    'sensitivity_scale': sensitivity_scale_block,
    'schedule': schedule_block,
    'ros_latency': ros_latency_block,
    'ros_soak': ros_soak_block,
    'models': models_block,
    'input_use': input_use_block,
    'activations': activations_block,
    'rotation_ptx': rotation_ptx_block,
    'mixed_ptx': mixed_ptx_block,
    'faults': lambda: faults_table(_load('faults.json')),
    'upstream_load': lambda: upstream_load_line(_load('upstream_load.json')),
}


def main() -> int:
    """Print every block whose results exist."""
    for name, block in BLOCKS.items():
        try:
            text = block()
        except TypeError:  # a block over a missing file
            text = None
        if text:
            print(f'## {name}\n\n{text}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
