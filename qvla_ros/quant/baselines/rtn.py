# Copyright 2026 qvla_ros authors. Apache-2.0.
"""RTN: round-to-nearest, every row of every layer at the same bit-width (W8/W4/W3/W2)."""

from typing import Dict

import torch
from torch import nn

from qvla_ros.core.layer_quant import LayerQuant
from qvla_ros.core.spec import check_bits


def rtn(layers: Dict[str, nn.Linear], bits: int) -> Dict[str, LayerQuant]:
    """Return uniform per-channel RTN at ``bits`` for every layer."""
    bits = check_bits(bits)
    return {k: LayerQuant(torch.full((m.out_features,), bits, dtype=torch.uint8))
            for k, m in layers.items()}
