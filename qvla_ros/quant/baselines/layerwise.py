# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Layer-wise mixed precision: one bit-width per layer from the same sensitivities.

The paper's Table 3 ablation. Each layer becomes one item whose cost at b bits is the sum of
its rows' sensitivities, and the same Eq. 8 greedy allocates bits over layers.
"""

from typing import Dict, Sequence

import torch

from qvla_ros.quant.allocation import Allocation, AllocationConfig, greedy_allocate


def layerwise_allocate(scores: Dict[str, torch.Tensor], sens_bits: Sequence[int],
                       in_features: Dict[str, int], cfg: AllocationConfig) -> Allocation:
    """Return an allocation where every row of a layer shares that layer's bits."""
    agg = {k: s.double().sum(1, keepdim=True).float() for k, s in scores.items()}  # (nb, 1)
    rows = {k: s.shape[1] for k, s in scores.items()}  # one item stands for N rows
    per_layer = greedy_allocate(agg, sens_bits, in_features, cfg, multiplicity=rows)
    bits = {k: per_layer.bits[k].expand(scores[k].shape[1]).clone() for k in scores}
    total = sum(float(scores[k][list(sens_bits).index(int(b))].sum()) if int(b) != 16 else 0.0
                for k, b in ((k, per_layer.bits[k][0]) for k in scores))
    return Allocation(bits, per_layer.achieved_bits, total, per_layer.budget_used,
                      per_layer.budget, per_layer.steps)
