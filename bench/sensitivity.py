# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Proxy vs exact action-space sensitivity: Spearman rank correlation per bit-width and per
layer type, and the cost of each method.

Runs on a random-init qvla-ref (tiny) with synthetic observations by default; --model takes
any model spec or checkpoint folder the CLI accepts, and --calibration a rollout dataset whose
steps are spread over its episodes, as the closed-loop grid takes them. Exact sensitivity for
every row of a trained reference takes hours on a CPU, so --rows-per-layer R measures it on R
rows per layer drawn at random (seeded) and correlates the proxy with it on those rows only.

    python bench/sensitivity.py     # writes bench/results/sensitivity.json
    python bench/sensitivity.py --model checkpoints/metaworld-small \
        --calibration build/reference-metaworld/calib --stride 3 --rows-per-layer 8 \
        --out bench/results/sensitivity_metaworld.json
"""

import argparse
from pathlib import Path
import sys
import time

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          write_json)
from qvla_ros.models.checkpoint import load_policy  # noqa: E402
from qvla_ros.quant.calibration_batch import calibration_batch  # noqa: E402
from qvla_ros.quant.sensitivity import (exact_sensitivity, hybrid_sensitivity,  # noqa: E402
                                        proxy_sensitivity, run_shard, SensitivityConfig,
                                        Shard, spearman)


def layer_type(name: str) -> str:
    """Return '<tower>.<linear>' of a layer path, e.g. 'language.q_proj' or 'vision.fc1'."""
    parts = name.split('.')
    return f'{parts[0]}.{parts[-1]}' if not parts[-1].isdigit() else parts[0]


def correlations(ex, other, bits):
    """Return Spearman per bit (global) and per (bit, layer type)."""
    out = {}
    types = sorted({layer_type(k) for k in ex})
    for bi, b in enumerate(bits):
        row = {'all': spearman(torch.cat([ex[k][bi] for k in ex]),
                               torch.cat([other[k][bi] for k in ex]))}
        for t in types:
            names = [k for k in ex if layer_type(k) == t]
            row[t] = spearman(torch.cat([ex[k][bi] for k in names]),
                              torch.cat([other[k][bi] for k in names]))
        out[str(b)] = row
    return out


def sample_rows(out_features, per_layer: int, seed: int = 0):
    """Return {layer: sorted row indices}, ``per_layer`` of each layer's rows drawn at random."""
    gen = torch.Generator().manual_seed(seed)
    picked = {}
    for name, n in out_features.items():
        k = min(per_layer, n)
        picked[name] = torch.randperm(n, generator=gen)[:k].sort().values
    return picked


def exact_on_rows(policy, batch, rows, bits):
    """Return {layer: (len(bits), len(rows[layer]))} exact sensitivities of those rows only."""
    cfg = SensitivityConfig(bits=bits, method='exact')
    layers = policy.quantizable_layers()
    out = {}
    for name, r in rows.items():
        n = layers[name].out_features
        out[name] = torch.stack([run_shard(policy, batch, Shard(name, 0, n, b), cfg, rows=r)
                                 for b in bits])
    return out


def main(argv=None) -> int:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='ref-tiny:0')
    parser.add_argument('--samples', type=int, default=16)
    parser.add_argument('--calibration', default=None,
                        help='rollout dataset (default: synthetic observations)')
    parser.add_argument('--stride', type=int, default=1)
    parser.add_argument('--rows-per-layer', type=int, default=0,
                        help='exact sensitivity on this many random rows per layer (0: all)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', default=str(RESULTS / 'sensitivity.json'))
    args = parser.parse_args(argv)
    if args.rows_per_layer < 0 or args.samples < 1 or args.stride < 1:
        parser.error('--rows-per-layer must be >= 0, --samples and --stride >= 1')
    torch.set_num_threads(args.threads)
    policy = load_policy(args.model)
    batch = calibration_batch(policy, args.calibration, args.samples, args.samples,
                              args.stride)
    bits = (0, 2, 4, 8)
    out_features = {k: m.out_features for k, m in policy.quantizable_layers().items()}
    result = {'device': device_name(), 'commit': git_commit(), 'model': args.model,
              'calibration': args.calibration, 'stride': args.stride,
              'samples': args.samples, 'bits': list(bits), 'command': command_line(),
              'rows': sum(out_features.values())}
    t0 = time.perf_counter()
    rows = None
    if args.rows_per_layer:
        rows = sample_rows(out_features, args.rows_per_layer)
        ex = exact_on_rows(policy, batch, rows, bits)
        result['exact_rows'] = sum(r.numel() for r in rows.values())
    else:
        ex = exact_sensitivity(policy, batch, SensitivityConfig(bits=bits, method='exact'))
    result['exact_seconds'] = time.perf_counter() - t0
    for k in (4, 16, 64):
        t0 = time.perf_counter()
        pr = proxy_sensitivity(policy, batch, SensitivityConfig(bits=bits, method='proxy',
                                                                projections=k))
        if rows is not None:
            pr = {n: pr[n][:, r] for n, r in rows.items()}
        result[f'proxy_k{k}'] = {'seconds': time.perf_counter() - t0,
                                 'spearman': correlations(ex, pr, bits),
                                 'sum_ratio_proxy_over_exact': {
                                     str(b): float(sum(pr[n][i].sum() for n in pr)
                                                   / sum(ex[n][i].sum() for n in ex))
                                     for i, b in enumerate(bits)}}
    # hybrid refines the top rows of all layers exactly: with sampled rows, not comparable
    for frac in () if rows is not None else (0.05, 0.2):
        t0 = time.perf_counter()
        hy, _ = hybrid_sensitivity(policy, batch, SensitivityConfig(
            bits=bits, method='hybrid', projections=16, refine_fraction=frac))
        result[f'hybrid_k16_refine{frac}'] = {'seconds': time.perf_counter() - t0,
                                              'spearman': correlations(ex, hy, bits)}
    write_json(Path(args.out), result)
    for key in [k for k in ('proxy_k4', 'proxy_k16', 'proxy_k64', 'hybrid_k16_refine0.05')
                if k in result]:
        rho = result[key]['spearman']
        print(f'{key:24s} ' + '  '.join(f'{b}b {rho[str(b)]["all"]:.3f}' for b in bits)
              + f'  ({result[key]["seconds"]:.2f} s)')
    print(f'exact: {result["exact_seconds"]:.2f} s; wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
