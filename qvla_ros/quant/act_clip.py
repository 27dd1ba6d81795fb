# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Per-layer activation clip ratios chosen on calibration data.

A per-token grid spans ``c`` times the token's absmax; a smaller c saturates the largest
entries and gives the rest a finer step. Which c is best depends on how heavy a layer's input
tails are, so each layer takes the c of :data:`~qvla_ros.quant.activation.CLIP_GRID` whose
rounding changes the layer's output least on its calibration inputs:

    c* = argmin_c  sum_t || (Q_c(x_t) - x_t) W^T ||^2

with x_t the layer's (rotated) input tokens and W its (rotated) FP weight: the output error,
not the input error, so that input channels the weight ignores do not count.
"""

from dataclasses import replace
from typing import Dict, Mapping, Sequence

import torch

from qvla_ros.quant.activation import ActSpec, CLIP_GRID, fake_quant_tokens
from qvla_ros.quant.calibration import LayerInputs


def clip_errors(x: torch.Tensor, weight: torch.Tensor, spec: ActSpec,
                grid: Sequence[float] = CLIP_GRID) -> torch.Tensor:
    """Return the output error of rounding x at each clip ratio of ``grid`` (len(grid),).

    x: (T, K) input tokens; weight: (N, K). Error = sum_t ||(Q_c(x_t) - x_t) W^T||^2.
    """
    x, w = x.double(), weight.detach().double()
    out = []
    for c in grid:
        err = fake_quant_tokens(x, replace(spec, clip_ratio=float(c), clip_search=False)) - x
        out.append((err @ w.T).square().sum())  # (T, N) output change, summed
    return torch.stack(out)


def best_clip(x: torch.Tensor, weight: torch.Tensor, spec: ActSpec,
              grid: Sequence[float] = CLIP_GRID) -> float:
    """Return the ratio of ``grid`` with the least output error (the first among equals)."""
    return float(grid[int(torch.argmin(clip_errors(x, weight, spec, grid)))])


def search_clips(weights: Mapping[str, torch.Tensor], samples: Mapping[str, LayerInputs],
                 spec: ActSpec, grid: Sequence[float] = CLIP_GRID) -> Dict[str, float]:
    """Return {layer: clip ratio} for every layer of ``weights`` (N, K).

    samples: each layer's calibration statistics, whose ``sample`` rows (T, K) are its input as
    the weight meets it before rounding (rotated); read one layer at a time, so a streamed
    mapping holds few layers at once.
    """
    return {k: best_clip(samples[k].sample, w, spec, grid) for k, w in weights.items()}
