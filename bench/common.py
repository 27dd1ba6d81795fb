# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Shared helpers of the benchmarks: timing, bit mixes, device names and atomic JSON."""

import json
from pathlib import Path
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import Optional, Tuple

import torch

RESULTS = Path(__file__).resolve().parent / 'results'

# name -> fractions of rows at (8, 4, 2, 0) bits; each averages to the named bits/param.
MIXES = {
    'u8': {8: 1.0},
    'u4': {4: 1.0},
    'u2': {2: 1.0},
    'qvla4.0': {8: 0.20, 4: 0.45, 2: 0.30, 0: 0.05},
}


def bits_for_mix(n: int, mix: dict, seed: int = 0) -> torch.Tensor:
    """Return (n,) bits with exact per-width counts (so layers of a shape share counts)."""
    counts, assigned = {}, 0
    for i, (b, frac) in enumerate(sorted(mix.items(), reverse=True)):
        counts[b] = n - assigned if i == len(mix) - 1 else int(round(frac * n))
        assigned += counts[b]
    bits = torch.cat([torch.full((c,), b, dtype=torch.int64) for b, c in counts.items()])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return bits[perm]


def device_name() -> str:
    """Return a short device name: the GPU's, else the CPU model."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'cpu'


def command_line() -> str:
    """Return this process's command line, quoted so that it can be pasted back into a shell."""
    return shlex.join(sys.argv)


def git_commit() -> str:
    """Return the current commit (+'-dirty' if tracked code differs), or 'unknown'.

    Changes under bench/results (which benchmarks write while they run) do not count.
    """
    here = Path(__file__).parent
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                             text=True, cwd=here, timeout=5)
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--',
                                '.', ':!bench/results'], capture_output=True, text=True,
                               cwd=here.parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    commit = out.stdout.strip()
    if not commit:
        return 'unknown'
    return commit + ('-dirty' if dirty.stdout.strip() else '')


def sample_cpu(fn, warmup: int = 3, reps: int = 20) -> list:
    """Return ``reps`` wall times of ``fn()`` in milliseconds, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def time_cpu(fn, warmup: int = 3, reps: int = 20, min_sample_ms: float = 2.0) -> float:
    """Return the median wall time of one ``fn()`` call in milliseconds.

    Calls shorter than ``min_sample_ms`` are timed in back-to-back batches that long (the
    batch time divided by its size), so that timer resolution and scheduler jitter do not
    swamp microsecond calls.
    """
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once_ms = (time.perf_counter() - start) * 1e3
    batch = max(1, min(10000, int(min_sample_ms / max(once_ms, 1e-4))))
    return statistics.median(sample_cpu(lambda: [fn() for _ in range(batch)], 0, reps)) / batch


def time_cuda(fn, warmup: int = 10, reps: int = 50) -> float:
    """Return the median time of ``fn()`` in ms with CUDA events, L2 flushed between reps."""
    flush = torch.empty(64 * 1024 * 1024, dtype=torch.int8, device='cuda')
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def time_cuda_graph(fn, calls: int = 20, reps: int = 10) -> float:
    """Return the median device time of ``fn()`` in ms, replayed from a CUDA graph.

    The graph holds ``calls`` rounds of (L2 flush, fn); a second graph holds the flushes
    alone, and its time is subtracted. This removes Python and launch overhead, which is
    what a deployed policy captured in a CUDA graph pays, while weights still come from HBM.
    """
    flush = torch.empty(64 * 1024 * 1024, dtype=torch.int8, device='cuda')
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream (autotuning, allocations)
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graphs = []
    for body in ((lambda: (flush.zero_(), fn())), flush.zero_):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                body()
        graphs.append(graph)
    times = []
    for graph in graphs:
        samples = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            graph.replay()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        times.append(statistics.median(samples))
    return max(times[0] - times[1], 0.0) / calls


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically, as sorted, indented JSON."""
    from qvla_ros.storage.atomic import write_text
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + '\n')


def slug(name: str) -> str:
    """Return a file-name-safe lower-case version of ``name``."""
    return ''.join(c if c.isalnum() else '-' for c in name.lower()).strip('-')


def cuda_bench_setup(doc: str, stem: str, **header) -> Optional[Tuple[Path, dict]]:
    """Parse a GPU benchmark's ``--out``; return (results path, results header) or None.

    None (after one line on stderr) when there is no CUDA device. The default path is
    bench/results/<stem>-<device>.json; the header holds command, commit, device, torch and
    ``header``, with an empty ``cases`` list.
    """
    import argparse
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument('--out', type=Path, default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(f'{Path(sys.argv[0]).name} needs a CUDA device', file=sys.stderr)
        return None
    dev = device_name()
    data = {'command': command_line(), 'commit': git_commit(), 'device': dev,
            'torch': torch.__version__, **header, 'cases': []}
    return args.out or RESULTS / f'{stem}-{slug(dev)}.json', data
