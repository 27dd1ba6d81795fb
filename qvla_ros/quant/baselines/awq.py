# Copyright 2026 qvla_ros authors. Apache-2.0.
"""AWQ: per-input-channel scale search, then per-row clipping, both on the output error.

Lin et al., 2024, "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration".

s = mean|x_j|^alpha (normalised), alpha on a grid in [0, 1]; the layer computes
Q(W diag(s)) (x / s). Clipping shrinks each row's range by the ratio that minimises
|| (x / s) (Q(W s)_c - (W s)_c) ||^2.
"""

from typing import Tuple

import torch

from qvla_ros.core.layer_quant import LayerQuant
from qvla_ros.core.primitives import dequantize_rows, quantize_rows, row_qparams
from qvla_ros.core.spec import QuantSpec


def _out_err(x: torch.Tensor, w_hat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Return per-row output error (N,) of w_hat vs w on inputs x (T, K)."""
    return (x @ (w_hat - w).T).pow(2).sum(0)


def awq_layer(weight: torch.Tensor, x: torch.Tensor, bits: int,
              spec: QuantSpec = QuantSpec(), grid: int = 20, clip_grid: int = 10,
              min_clip: float = 0.5) -> LayerQuant:
    """Return the LayerQuant of AWQ at ``bits`` for one layer; x (T, K) sampled inputs."""
    w = weight.detach().float()
    x = x.float()
    x_mean = x.abs().mean(0).clamp(min=1e-6)  # (K,)
    best: Tuple[float, torch.Tensor] = (float('inf'), torch.ones_like(x_mean))
    for i in range(grid + 1):
        s = x_mean.pow(i / grid)
        s = s / (s.max() * s.min()).sqrt()
        w_hat = dequantize_rows(quantize_rows(w * s, bits, spec)) / s
        err = float(_out_err(x, w_hat, w).sum())
        if err < best[0]:
            best = (err, s)
    s = best[1]
    ws, xs = w * s, x / s
    best_err = torch.full((w.shape[0],), float('inf'))
    scale, zero = row_qparams(ws, bits, spec)
    for r in torch.linspace(1.0, min_clip, clip_grid + 1).tolist():
        ratio = torch.full((w.shape[0],), r)
        sc, ze = row_qparams(ws, bits, spec, clip_ratio=ratio)
        row_err = _out_err(xs, dequantize_rows(quantize_rows(ws, bits, spec, (sc, ze))), ws)
        better = row_err < best_err
        best_err = torch.where(better, row_err, best_err)
        scale[better], zero[better] = sc[better], ze[better]
    return LayerQuant(torch.full((w.shape[0],), bits, dtype=torch.uint8),
                      qparams=(scale, zero), input_scale=s)
