# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Which Triton path runs a packed layer at a given M: measured on first use, then cached.

Paths (all equal to ``reference_linear`` up to accumulation order):

* ``gemv``    M = 1 decode kernel (:mod:`qvla_ros.kernels.triton_gemv`);
* ``fused``   tiled dequantize-matmul, one launch per bit group
  (:mod:`qvla_ros.kernels.triton_mixed`);
* ``fused1``  the same kernel with every group in one launch (fewer launches, more registers
  and spills); run only when asked by name, since timing it too would compile every tile
  once more on first use.
* ``dequant`` transient dense weight + cuBLAS (:mod:`qvla_ros.kernels.triton_dequant`).

The first call for a (layer shape, group size, dtype, M bucket) times every applicable
path with ``triton.testing.do_bench`` and keeps the fastest, as Triton's autotuner does for
tile sizes: the choice changes speed only, never results. M = 1 tries gemv and fused; M > 1
tries fused and dequant. Under TRITON_INTERPRET (no timing) M = 1 uses gemv and
M > 1 fused. The cache is per process (``clear_choices`` empties it); a CUDA-graph capture
must follow a warm-up call, as with any autotuned kernel.

This module imports triton at import; import it only through ``qvla_ros.kernels.dispatch``.
"""

import functools
from typing import Callable, Dict, Optional, Tuple

import torch
import triton

from qvla_ros.kernels.format import PackedLayout
from qvla_ros.kernels.triton_dequant import dequant_linear
from qvla_ros.kernels.triton_gemv import mixed_gemv, supports
from qvla_ros.kernels.triton_mixed import interpreting, mixed_linear

PATHS: Dict[str, Callable[[torch.Tensor, PackedLayout], torch.Tensor]] = {
    'gemv': mixed_gemv, 'fused': mixed_linear,
    'fused1': functools.partial(mixed_linear, split=False), 'dequant': dequant_linear}
_CHOICES: Dict[Tuple, str] = {}


def _key(x: torch.Tensor, layout: PackedLayout, m: int) -> Tuple:
    bucket = 1 if m == 1 else triton.next_power_of_2(m)
    return (layout.out_features, layout.in_features, layout.group_size,
            layout.bias is not None, x.dtype, x.device, bucket)


def candidates(layout: PackedLayout, m: int) -> Tuple[str, ...]:
    """Return the paths worth timing for ``m`` rows of input."""
    if not supports(layout):
        return ('fused',)
    return ('gemv', 'fused') if m == 1 else ('fused', 'dequant')


def choose(x: torch.Tensor, layout: PackedLayout) -> str:
    """Return the path for x (..., K) on ``layout``: cached, else measured now."""
    m = x.numel() // layout.in_features
    if interpreting():
        return 'gemv' if m == 1 and supports(layout) else 'fused'
    key = _key(x, layout, m)
    if key not in _CHOICES:
        paths = candidates(layout, m)
        if len(paths) == 1:
            _CHOICES[key] = paths[0]
        else:
            times = {p: triton.testing.do_bench(lambda p=p: PATHS[p](x, layout),
                                                warmup=5, rep=20) for p in paths}
            _CHOICES[key] = min(times, key=lambda p: times[p])
    return _CHOICES[key]


def auto_linear(x: torch.Tensor, layout: PackedLayout,
                path: Optional[str] = None) -> torch.Tensor:
    """Return x (..., K) through the packed layer by ``path``, or the measured best one."""
    if path is not None and path not in PATHS:
        raise ValueError(f'unknown path {path!r}; expected one of {sorted(PATHS)}')
    return PATHS[path or choose(x, layout)](x, layout)


def choices() -> Dict[Tuple, str]:
    """Return a copy of the cached path per layer key (for benchmarks and logs)."""
    return dict(_CHOICES)


def clear_choices() -> None:
    """Forget every cached choice (the next call measures again)."""
    _CHOICES.clear()
