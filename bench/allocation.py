# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Allocation benchmark: an OpenVLA-sized instance (1.85 M rows x 5 levels) and the greedy's
optimality gap against the exact Lagrangian lower bound on synthetic instances.

    python bench/allocation.py      # writes bench/results/allocation.json
"""

import argparse
from pathlib import Path
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          write_json)
from qvla_ros.quant.allocation import (AllocationConfig, greedy_allocate,  # noqa: E402
                                       greedy_allocate_heap, lagrangian_lower_bound)

BITS = [0, 2, 4, 8]


def openvla_shapes():
    """Return (name, rows, in_features) of OpenVLA's quantizable linears (LLM + ViTs)."""
    out = []
    for i in range(32):  # LLaMA-2-7B
        for p, n, k in (('q', 4096, 4096), ('k', 4096, 4096), ('v', 4096, 4096),
                        ('o', 4096, 4096), ('gate', 11008, 4096), ('up', 11008, 4096),
                        ('down', 4096, 11008)):
            out.append((f'llm.{i}.{p}', n, k))
    for i in range(27):  # SigLIP so400m
        for p, n, k in (('qkv', 3456, 1152), ('proj', 1152, 1152), ('fc1', 4304, 1152),
                        ('fc2', 1152, 4304)):
            out.append((f'siglip.{i}.{p}', n, k))
    for i in range(24):  # DINOv2-L
        for p, n, k in (('qkv', 3072, 1024), ('proj', 1024, 1024), ('fc1', 4096, 1024),
                        ('fc2', 1024, 4096)):
            out.append((f'dino.{i}.{p}', n, k))
    return out


def synthetic_scores(shapes, seed):
    """Return heavy-tailed sensitivities that fall with bits, per row and per layer."""
    rng = np.random.default_rng(seed)
    scores, kin = {}, {}
    for name, n, k in shapes:
        layer = rng.lognormal(0, 1.5)
        base = layer * rng.lognormal(0, 2, (n, 1))
        s = np.concatenate([base * rng.lognormal(m, 0.7, (n, 1)) for m in (4, 1.5, -1, -5)], 1)
        scores[name] = torch.from_numpy(s.T.astype(np.float32))
        kin[name] = k
    return scores, kin


def main(argv=None) -> int:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=str(RESULTS / 'allocation.json'))
    args = parser.parse_args(argv)
    result = {'device': device_name(), 'commit': git_commit(), 'command': command_line()}
    shapes = openvla_shapes()
    scores, kin = synthetic_scores(shapes, 0)
    rows = sum(n for _, n, _ in shapes)
    timings = {}
    for target in (4.0, 3.0, 2.5):
        t0 = time.perf_counter()
        alloc = greedy_allocate(scores, BITS, kin, AllocationConfig(target_bits=target))
        timings[str(target)] = {'seconds': time.perf_counter() - t0,
                                'achieved_bits': alloc.achieved_bits}
        print(f'openvla-sized: {rows} rows, target {target}: '
              f'{timings[str(target)]["seconds"]:.1f} s, achieved {alloc.achieved_bits:.4f}',
              flush=True)
    result['openvla_sized'] = {'rows': rows, 'levels': 5, 'layers': len(shapes),
                               'greedy': timings, 'goal_seconds': 60}
    small = [(f'l{i}', int(n), int(k)) for i, (n, k) in enumerate(
        np.random.default_rng(1).integers(1, 9, (12, 2)) * [64, 128])]
    gaps = []
    for seed in range(5):
        sc, ki = synthetic_scores(small, 100 + seed)
        for target in (8.0, 4.0, 3.0, 2.5):
            cfg = AllocationConfig(target_bits=target, max_prune_fraction=1.0)
            t0 = time.perf_counter()
            greedy = greedy_allocate(sc, BITS, ki, cfg)
            t_fast = time.perf_counter() - t0
            t0 = time.perf_counter()
            heap = greedy_allocate_heap(sc, BITS, ki, cfg)
            t_heap = time.perf_counter() - t0
            lower = lagrangian_lower_bound(sc, BITS, ki, cfg)
            gaps.append({'seed': seed, 'target_bits': target,
                         'rows': sum(n for _, n, _ in small),
                         'greedy': greedy.total_sensitivity, 'lower_bound': lower,
                         'relative_gap': (greedy.total_sensitivity - lower) / max(lower, 1e-30),
                         'heap_equal': all(torch.equal(greedy.bits[k], heap.bits[k])
                                           for k in sc),
                         'vectorised_s': t_fast, 'heap_s': t_heap})
    result['optimality_gap'] = gaps
    for target in (8.0, 4.0, 3.0, 2.5):
        g = [x['relative_gap'] for x in gaps if x['target_bits'] == target]
        print(f'gap at {target} bits: median {np.median(g):.4f}, max {max(g):.4f}')
    write_json(Path(args.out), result)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
