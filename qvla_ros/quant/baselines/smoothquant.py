# Copyright 2026 qvla_ros authors. Apache-2.0.
"""SmoothQuant (Xiao et al., 2023): migrate activation outliers into the weights.

Per input channel j, s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) (Eq. 4 of the paper); the
layer computes Q_w(W diag(s)) Q_a(diag(s)^-1 x) with weights at the target bits and
activations per-token A8.
"""

import torch

from qvla_ros.core.layer_quant import LayerQuant


def smooth_scales(act_absmax: torch.Tensor, weight: torch.Tensor,
                  alpha: float = 0.5) -> torch.Tensor:
    """Return s (K,) from activation absmax (K,) and the weight (N, K)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'SmoothQuant alpha must be in [0, 1], got {alpha}')
    w_max = weight.detach().abs().amax(0).float().clamp(min=1e-5)  # (K,)
    a_max = act_absmax.float().clamp(min=1e-5)
    return (a_max.pow(alpha) / w_max.pow(1 - alpha)).clamp(min=1e-5)


def smoothquant_layer(weight: torch.Tensor, act_absmax: torch.Tensor, bits: int,
                      alpha: float = 0.5) -> LayerQuant:
    """Return the LayerQuant of SmoothQuant at ``bits`` for every row."""
    s = smooth_scales(act_absmax, weight, alpha)
    return LayerQuant(torch.full((weight.shape[0],), bits, dtype=torch.uint8), input_scale=s)
