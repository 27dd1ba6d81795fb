# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Mixed-bit linear speed and memory against dense F.linear, measured side by side.

    python bench/kernel_speed.py                 # CPU: vs fp32 and bf16 F.linear, 2 threads
    python bench/kernel_speed.py --device cuda   # GPU: fused Triton kernel vs fp16 cuBLAS

Writes bench/results/kernels-<device>.json (rewritten after every case, atomically).
Ratios are dense_time / mixed_time (> 1 means the packed layer is faster).
"""

import argparse
from pathlib import Path
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (bits_for_mix, device_name, git_commit, MIXES,  # noqa: E402
                          RESULTS, slug, time_cpu, time_cuda, time_cuda_graph,
                          write_json)
from qvla_ros.kernels.format import PackedLayout, reference_linear  # noqa: E402

# (name, out_features N, in_features K)
SHAPES = [
    ('llama2-7b.qkvo', 4096, 4096), ('llama2-7b.gate_up', 11008, 4096),
    ('llama2-7b.down', 4096, 11008), ('siglip-so400m.fc1', 4304, 1152),
    ('siglip-so400m.fc2', 1152, 4304), ('qvla-ref-small.qkvo', 384, 384),
    ('qvla-ref-small.fc1', 1536, 384), ('qvla-ref-small.fc2', 384, 1536),
]


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    """Return max |y - ref| / max |ref| (y in any float dtype, ref float32)."""
    return ((y.float() - ref).abs().max() / ref.abs().max()).item()


def bench_case(name, n, k, mix, m, device):
    """Time one (shape, mix, M) case; return a result dict."""
    w = torch.randn(n, k, device=device) * 0.02
    bias = torch.randn(n, device=device) * 0.01
    bits = bits_for_mix(n, MIXES[mix])
    dense_dtype = torch.float16 if device == 'cuda' else torch.bfloat16
    layout = PackedLayout.from_float(w, bits, bias=bias, dense_dtype=dense_dtype)
    fp16_bytes = n * k * 2 + n * 2
    row = {'shape': name, 'N': n, 'K': k, 'mix': mix, 'M': m,
           'avg_bits_per_param': float(bits.float().mean()),
           'packed_bytes': layout.packed_bytes(), 'fp16_bytes': fp16_bytes,
           'packed_over_fp16': layout.packed_bytes() / fp16_bytes}
    if device == 'cuda':
        row.update(bench_cuda(layout, w, bias, m))
    else:
        from qvla_ros.kernels.cpu import cpu_linear, SMALL_M
        x = torch.randn(m, k)
        wb, bb = w.bfloat16(), bias.bfloat16()
        y = cpu_linear(x, layout)
        ref = reference_linear(x, layout)
        row['max_rel_err'] = _rel_err(y, ref)
        reps = 5 if n * k * m > 2e9 else 15
        row['dense_fp32_ms'] = time_cpu(lambda: F.linear(x, w, bias), reps=reps)
        row['dense_bf16_ms'] = time_cpu(lambda: F.linear(x.bfloat16(), wb, bb), reps=reps)
        row['mixed_ms'] = time_cpu(lambda: cpu_linear(x, layout), reps=reps)
        row['mixed_over_fp32'] = row['mixed_ms'] / row['dense_fp32_ms']
        row['mixed_over_bf16'] = row['mixed_ms'] / row['dense_bf16_ms']
        if m > SMALL_M:  # the default computes in bf16 here; float32 compute for comparison
            row['max_rel_err_fp32_compute'] = _rel_err(
                cpu_linear(x, layout, compute_dtype=torch.float32), ref)
            row['mixed_fp32_compute_ms'] = time_cpu(
                lambda: cpu_linear(x, layout, compute_dtype=torch.float32), reps=reps)
            row['mixed_fp32_compute_over_fp32'] = (row['mixed_fp32_compute_ms']
                                                   / row['dense_fp32_ms'])
    return row


def bench_cuda(layout, w, bias, m) -> dict:
    """Time every Triton path and the auto choice against fp16 cuBLAS, eager and graphed."""
    from qvla_ros.kernels import triton_auto
    x = torch.randn(m, w.shape[1], device='cuda', dtype=torch.float16)
    w16, b16 = w.half(), bias.half()
    ref = reference_linear(x.float(), layout).float()
    row = {'dense_fp16_ms': time_cuda(lambda: F.linear(x, w16, b16))}
    # each autotunes on its first call; fused1 (one launch for all bit groups) is timed beside
    # the per-group launches of fused though the path choice does not try it
    for path in dict.fromkeys((*triton_auto.candidates(layout, m), 'fused', 'fused1')):
        y = triton_auto.auto_linear(x, layout, path)
        row[f'{path}_max_rel_err'] = _rel_err(y, ref)
        row[f'{path}_ms'] = time_cuda(lambda: triton_auto.auto_linear(x, layout, path))
    row['path'] = triton_auto.choose(x, layout)
    row['max_rel_err'] = row[f'{row["path"]}_max_rel_err']
    row['mixed_ms'] = time_cuda(lambda: triton_auto.auto_linear(x, layout))
    row['speedup_vs_fp16'] = row['dense_fp16_ms'] / row['mixed_ms']
    # Device time without launch overhead (what a CUDA-graph-captured policy pays).
    try:
        row['dense_fp16_graph_ms'] = time_cuda_graph(lambda: F.linear(x, w16, b16))
        row['mixed_graph_ms'] = time_cuda_graph(lambda: triton_auto.auto_linear(x, layout))
        row['graph_speedup_vs_fp16'] = (row['dense_fp16_graph_ms']
                                        / max(row['mixed_graph_ms'], 1e-6))
        for path in ('fused', 'fused1'):
            row[f'{path}_graph_ms'] = time_cuda_graph(
                lambda path=path: triton_auto.auto_linear(x, layout, path))
    except RuntimeError as err:  # a capture failure is a result too; keep the eager numbers
        row['graph_error'] = str(err)[:300]
    return row


def _fmt(value) -> str:
    return f'{value:.2f}' if isinstance(value, float) else str(value)


def main(argv=None) -> int:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, default=2, help='CPU threads')
    parser.add_argument('--shapes', default='all', help='comma list of shape names, or all')
    parser.add_argument('--mixes', default=','.join(MIXES))
    parser.add_argument('--ms', default=None, help='comma list of M (tokens)')
    parser.add_argument('--budget-s', type=float, default=420.0,
                        help='stop starting new cases after this many seconds')
    parser.add_argument('--out', default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shapes = [s for s in SHAPES if args.shapes == 'all' or s[0] in args.shapes.split(',')]
    ms = ([int(v) for v in args.ms.split(',')] if args.ms else
          ([1, 16, 256, 600] if args.device == 'cuda' else [1, 214]))
    out = Path(args.out) if args.out else RESULTS / f'kernels-{slug(device_name())}.json'
    result = {'device': device_name(), 'commit': git_commit(), 'torch': torch.__version__,
              'threads': args.threads, 'command': ' '.join(sys.argv), 'cases': [],
              'skipped': []}
    if args.device == 'cpu':  # without the extension every case would time the torch fallback
        from qvla_ros.kernels import cpu_ext
        cpu_ext.load()
        result['cpu_extension'] = cpu_ext.status()
        if result['cpu_extension'] != 'ok':
            print(f'CPU extension: {result["cpu_extension"]}', file=sys.stderr)
            return 1
    start = time.monotonic()
    for name, n, k in shapes:
        for mix in args.mixes.split(','):
            for m in ms:
                if time.monotonic() - start > args.budget_s:
                    result['skipped'].append(f'{name}/{mix}/M={m}')
                    continue
                row = bench_case(name, n, k, mix, m, args.device)
                result['cases'].append(row)
                write_json(out, result)
                keys = (('path', 'speedup_vs_fp16', 'graph_speedup_vs_fp16')
                        if args.device == 'cuda' else
                        ('mixed_over_fp32', 'mixed_over_bf16', 'mixed_fp32_compute_over_fp32'))
                print(f'{name:22s} {mix:8s} M={m:4d} ' + ' '.join(
                    f'{key}={_fmt(row.get(key))}' for key in keys)
                    + f' bytes={row["packed_over_fp16"]:.3f} err={row["max_rel_err"]:.1e}',
                    flush=True)
    write_json(out, result)
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
