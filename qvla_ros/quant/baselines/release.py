# Copyright 2026 qvla_ros authors. Apache-2.0.
"""QVLA-release: the official code's proxy and allocator, reproduced faithfully.

``sensitivity_hessian_proxy.py`` (AutoLab-SAI-SJTU/QVLA @ 26cc482): per layer,
H = 2/n X^T X, dead diagonal entries set to 1, 1 % of mean(diag) added, d = diag(U) with U the
upper Cholesky factor of H^-1, and proxy_b[c] = sum_j (W - Q_b(W))^2_{cj} / d_j^2 with Q_b the
per-row *symmetric* absmax RTN (2 bits is then ternary) and Q_0 = 0. It never looks at actions.

``assign_gates_from_sensitivity.py``: a global min-heap whose cost is the *absolute*
proxy_new / (bits saved), not the increment of Eq. 8, with the budget averaged over
*channels*, not parameters, and no pruning guard.
"""

import heapq
from typing import Dict, Sequence

import torch

from qvla_ros.core.primitives import fake_quant_rows
from qvla_ros.core.spec import QuantSpec, Scheme

RELEASE_SPEC = QuantSpec(scheme=Scheme.SYMMETRIC)


def release_proxy(weight: torch.Tensor, hessian: torch.Tensor, bits: Sequence[int],
                  percdamp: float = 0.01) -> torch.Tensor:
    """Return proxy (len(bits), N) as the release computes it."""
    H = hessian.detach().double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=H.dtype)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    d = torch.diag(U)  # (K,)
    w = weight.detach().double()
    out = []
    for b in bits:
        q = fake_quant_rows(w, torch.full((w.shape[0],), int(b)), RELEASE_SPEC)
        out.append(((w - q) ** 2 / d.pow(2)).sum(1))
    return torch.stack(out).float()


def release_allocate(proxy: Dict[str, torch.Tensor], sens_bits: Sequence[int],
                     target_bits: float,
                     candidates: Sequence[int] = (0, 2, 4, 8, 16)) -> Dict[str, torch.Tensor]:
    """Return bits per row from the release's absolute-cost, channel-averaged greedy."""
    levels = sorted(candidates, reverse=True)
    sens_bits = list(sens_bits)
    names = sorted(proxy)

    def cost(name, row, b):
        return 0.0 if b == 16 else float(proxy[name][sens_bits.index(b), row])
    level = {k: [0] * proxy[k].shape[1] for k in names}
    heap = []
    for li, k in enumerate(names):
        for row in range(proxy[k].shape[1]):
            heap.append((cost(k, row, levels[1]) / (levels[0] - levels[1]), li, row, 0))
    heapq.heapify(heap)
    channels = sum(proxy[k].shape[1] for k in names)
    total = levels[0] * channels
    while total > target_bits * channels and heap:
        _, li, row, j = heapq.heappop(heap)
        k = names[li]
        if level[k][row] != j:
            continue
        level[k][row] = j + 1
        total -= levels[j] - levels[j + 1]
        if j + 2 < len(levels):
            heapq.heappush(heap, (cost(k, row, levels[j + 2]) / (levels[j + 1] - levels[j + 2]),
                                  li, row, j + 1))
    return {k: torch.tensor([levels[j] for j in level[k]], dtype=torch.uint8) for k in names}
