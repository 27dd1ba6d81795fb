# Copyright 2026 qvla_ros authors. Apache-2.0.
"""LayerQuant: what every quantization method produces for one linear layer.

A LayerQuant says which weight to quantize (possibly updated, e.g. by GPTQ), at which bits
per row, on which grid (optional qparams), and with which per-input-channel scale s
(optional: the layer then computes Q(W s) (x / s), SmoothQuant/AWQ style). Applying one
(``qvla_ros.quant.apply``) is the same for every method, fake-quant or packed.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch


@dataclass
class LayerQuant:
    """How one linear is quantized; see the module docstring."""

    bits: torch.Tensor                                   # (N,) uint8
    weight: Optional[torch.Tensor] = None                # (N, K) to quantize, if not the FP one
    qparams: Optional[Tuple[torch.Tensor, torch.Tensor]] = None  # (N, G) scale, zero
    input_scale: Optional[torch.Tensor] = None           # (K,) s: weight W*s, input x/s
