# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Proxy vs exact action-space sensitivity: Spearman rank correlation per bit-width and per
layer type, and the cost of each method.

Runs on a random-init qvla-ref (tiny) by default, until a trained reference checkpoint
exists; --model takes any model spec or checkpoint folder the CLI accepts.

    python bench/sensitivity.py     # writes bench/results/sensitivity.json
"""

import argparse
from pathlib import Path
import sys
import time

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import device_name, git_commit, RESULTS, write_json  # noqa: E402
from qvla_ros.cli.quant_cmds import calibration_batch  # noqa: E402
from qvla_ros.models.checkpoint import load_policy  # noqa: E402
from qvla_ros.quant.sensitivity import (exact_sensitivity, hybrid_sensitivity,  # noqa: E402
                                        proxy_sensitivity, SensitivityConfig, spearman)


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


def main(argv=None) -> int:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='ref-tiny:0')
    parser.add_argument('--samples', type=int, default=16)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', default=str(RESULTS / 'sensitivity.json'))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    policy = load_policy(args.model)
    batch = calibration_batch(policy, None, args.samples, args.samples, 1)
    bits = (0, 2, 4, 8)
    result = {'device': device_name(), 'commit': git_commit(), 'model': args.model,
              'samples': args.samples, 'bits': list(bits), 'command': ' '.join(sys.argv),
              'rows': sum(m.out_features for m in policy.quantizable_layers().values())}
    t0 = time.perf_counter()
    ex = exact_sensitivity(policy, batch, SensitivityConfig(bits=bits, method='exact'))
    result['exact_seconds'] = time.perf_counter() - t0
    for k in (4, 16, 64):
        t0 = time.perf_counter()
        pr = proxy_sensitivity(policy, batch, SensitivityConfig(bits=bits, method='proxy',
                                                                projections=k))
        result[f'proxy_k{k}'] = {'seconds': time.perf_counter() - t0,
                                 'spearman': correlations(ex, pr, bits),
                                 'sum_ratio_proxy_over_exact': {
                                     str(b): float(sum(pr[n][i].sum() for n in pr)
                                                   / sum(ex[n][i].sum() for n in ex))
                                     for i, b in enumerate(bits)}}
    for frac in (0.05, 0.2):
        t0 = time.perf_counter()
        hy, _ = hybrid_sensitivity(policy, batch, SensitivityConfig(
            bits=bits, method='hybrid', projections=16, refine_fraction=frac))
        result[f'hybrid_k16_refine{frac}'] = {'seconds': time.perf_counter() - t0,
                                              'spearman': correlations(ex, hy, bits)}
    write_json(Path(args.out), result)
    for key in ('proxy_k4', 'proxy_k16', 'proxy_k64', 'hybrid_k16_refine0.05'):
        rho = result[key]['spearman']
        print(f'{key:24s} ' + '  '.join(f'{b}b {rho[str(b)]["all"]:.3f}' for b in bits)
              + f'  ({result[key]["seconds"]:.2f} s)')
    print(f'exact: {result["exact_seconds"]:.2f} s; wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
