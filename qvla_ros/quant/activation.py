# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Activation quantization: uniform per-token dynamic integer grids (A8), fake-quantized.

``ActSpec.rotation`` is reserved for a rotation-based A4 (Hadamard/QuaRot style) later: the
rotation would be applied to x and folded into the weight columns before quantization.
"""

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class ActSpec:
    """Activation quantizer: ``bits`` per token (symmetric, dynamic), optional rotation."""

    bits: int = 8
    rotation: Optional[str] = None

    def __post_init__(self):
        if self.bits not in (4, 8):
            raise ValueError(f'ActSpec.bits must be 4 or 8, got {self.bits}')
        if self.rotation is not None:
            raise ValueError(f'activation rotation {self.rotation!r} is not implemented yet; '
                             'expected None')


def fake_quant_tokens(x: torch.Tensor, spec: ActSpec) -> torch.Tensor:
    """Return x (..., K) quantized-dequantized per token (last dim) on a symmetric grid."""
    qmax = 2 ** (spec.bits - 1) - 1
    scale = x.detach().abs().amax(-1, keepdim=True).clamp(min=1e-8) / qmax  # (..., 1)
    return torch.round(x / scale).clamp(-qmax - 1, qmax) * scale
