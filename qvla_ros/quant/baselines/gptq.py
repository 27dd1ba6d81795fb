# Copyright 2026 qvla_ros authors. Apache-2.0.
"""GPTQ: column-by-column quantization with Hessian-based error feedback.

Frantar et al., 2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers".

Follows the reference ``gptq.py``: H = 2/n X^T X, dead inputs zeroed, damping, the upper
Cholesky factor of H^-1, blocked lazy updates, optional act-order. The grid of each row is
fixed up front from the original row at that row's bits, so any bits-per-row plan works:
16-bit rows are kept, 0-bit rows removed.
"""

from typing import Tuple

import torch

from qvla_ros.core.layer_quant import LayerQuant
from qvla_ros.core.primitives import row_qparams
from qvla_ros.core.spec import QuantSpec


def _grids(w: torch.Tensor, bits: torch.Tensor, spec: QuantSpec):
    """Return scale, zero (N, G) and maxq (N,) with each row's grid at its bits."""
    n, k = w.shape
    g = k // (spec.group_size or k)
    scale, zero = torch.ones(n, g), torch.zeros(n, g)
    maxq = torch.zeros(n)
    for b in torch.unique(bits).tolist():
        rows = (bits == b).nonzero().squeeze(1)
        if b in (0, 16):
            continue
        scale[rows], zero[rows] = row_qparams(w[rows], b, spec)
        maxq[rows] = 2 ** b - 1
    return scale, zero, maxq


def gptq(weight: torch.Tensor, hessian: torch.Tensor, bits: torch.Tensor,
         spec: QuantSpec = QuantSpec(), block: int = 128, percdamp: float = 0.01,
         act_order: bool = False) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Return (W_q (N, K) on each row's grid, (scale, zero)) for ``bits`` (N,).

    W_q has the weight's dtype, or float32 when that is float16 / bfloat16.
    """
    W = weight.detach().double().clone()  # (N, K)
    H = hessian.detach().double().clone()  # (K, K)
    n, k = W.shape
    bits = torch.as_tensor(bits).reshape(-1).long()
    gs = spec.group_size or k
    scale, zero, maxq = _grids(weight.detach().float(), bits, spec)
    quant = maxq > 0  # rows at 2..8 bits
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(k)
    W, H = W[:, perm], H[perm][:, perm]
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(k, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    s64, z64, mq = scale.double(), zero.double(), maxq.double()
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        W1, Err1 = W[:, i1:i2].clone(), torch.zeros(n, i2 - i1, dtype=W.dtype)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            w = W1[:, i]
            s, z = s64[:, col // gs], z64[:, col // gs]
            q = (torch.minimum(torch.clamp(torch.round(w / s) + z, min=0), mq) - z) * s
            q = torch.where(quant, q, w)  # 16-bit rows unchanged (0-bit rows zeroed below)
            Q[:, i1 + i] = q
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    Q = Q[:, torch.argsort(perm)]
    Q[bits == 0] = 0
    # grid values (q - z) s of 8-bit rows need more mantissa than bf16/fp16 has: keep float32
    low = weight.dtype in (torch.float16, torch.bfloat16)
    return Q.to(torch.float32 if low else weight.dtype), (scale, zero)


def gptq_layer(weight: torch.Tensor, hessian: torch.Tensor, bits: torch.Tensor,
               spec: QuantSpec = QuantSpec(), act_order: bool = False,
               block: int = 128, percdamp: float = 0.01) -> LayerQuant:
    """Return the LayerQuant of GPTQ for one layer."""
    q, grid = gptq(weight, hessian, bits, spec, block, percdamp, act_order)
    return LayerQuant(torch.as_tensor(bits).to(torch.uint8), weight=q, qparams=grid)
