# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Prefill-time alternative: dequantize a packed layer into a transient dense tile, then GEMM.

Contract: ``dequant_linear(x, layout)`` == ``reference_linear(x, layout)`` up to the dense
GEMM's rounding (x's dtype, fp32 accumulation in cuBLAS).

At large M a linear layer is compute-bound and the packed words are read once per M tile
either way, so a fused kernel wins only if its in-register dequantization keeps up with the
tensor cores. When it does not, one Triton launch writes the kept rows as a dense (R, K)
matrix in x's dtype (``_dequant_kernel``: grid over (row tiles of each bit group, K tiles),
each word loaded once and expanded in registers as in the GEMV kernel, w_hat = (q - z) s,
paper Eq. 2), ``F.linear`` runs it on cuBLAS, and
``index_copy_`` puts the R packed output columns back at ``perm``. The dense matrix lives only
for the call: packed memory stays packed, and the peak grows by one layer's dense weight.
Which of the two a layer uses at a given M is measured, not assumed
(:mod:`qvla_ros.kernels.triton_auto`).

This module imports triton at import; import it only through ``qvla_ros.kernels.dispatch``.
"""

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from qvla_ros.kernels.format import KERNEL_SIZES, PackedLayout
from qvla_ros.kernels.triton_gemv import supports


@triton.jit
def _dequant_words(w_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, k0, rows, nrows, out_row0,
                   word_start, wpr, qrow_start, BITS: tl.constexpr, PER_ROW: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # Power-of-two codes per word: load each word once and expand it in registers to
    # (BLOCK_N, BLOCK_K / VPW, VPW), the streaming form of the GEMV kernel.
    VPW: tl.constexpr = 32 // BITS
    BW: tl.constexpr = BLOCK_K // VPW
    mask_n = rows < nrows
    qrows = qrow_start + rows
    offs_w = k0 // VPW + tl.arange(0, BW)                                # (BW,)
    wmask = mask_n[:, None] & (offs_w[None, :] < wpr)
    word = tl.load(qw_ptr + word_start + rows[:, None] * wpr + offs_w[None, :],
                   mask=wmask, other=0)                                  # (BN, BW)
    shifts = tl.arange(0, VPW) * BITS
    q = ((word[:, :, None] >> shifts[None, None, :]) & ((1 << BITS) - 1)).to(tl.float32)
    if PER_ROW:
        s = tl.load(s_ptr + qrows * G, mask=mask_n, other=0.0).to(tl.float32)[:, None, None]
        z = tl.load(z_ptr + qrows * G, mask=mask_n, other=0.0).to(tl.float32)[:, None, None]
    else:  # each word lies in one group (GS % 16 == 0, checked on the host)
        sidx = qrows[:, None] * G + (offs_w[None, :] * VPW) // GS
        s = tl.load(s_ptr + sidx, mask=wmask, other=0.0).to(tl.float32)[:, :, None]
        z = tl.load(z_ptr + sidx, mask=wmask, other=0.0).to(tl.float32)[:, :, None]
    offs_k = offs_w[:, None] * VPW + tl.arange(0, VPW)[None, :]          # (BW, VPW)
    mask = mask_n[:, None, None] & (offs_k[None, :, :] < K)
    tl.store(w_ptr + (out_row0 + rows[:, None, None]) * K + offs_k[None, :, :],
             ((q - z) * s).to(w_ptr.dtype.element_ty), mask=mask)        # Eq. 2


@triton.jit
def _dequant_gather(w_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, k0, rows, nrows, out_row0,
                    word_start, wpr, qrow_start, BITS: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    VPW: tl.constexpr = 32 // BITS  # 10 for 3-bit: codes are gathered column by column
    offs_k = k0 + tl.arange(0, BLOCK_K)
    mask = (rows[:, None] < nrows) & (offs_k[None, :] < K)
    word = tl.load(qw_ptr + word_start + rows[:, None] * wpr + offs_k[None, :] // VPW,
                   mask=mask, other=0)
    q = ((word >> ((offs_k[None, :] % VPW) * BITS)) & ((1 << BITS) - 1)).to(tl.float32)
    sidx = (qrow_start + rows[:, None]) * G + offs_k[None, :] // GS
    s = tl.load(s_ptr + sidx, mask=mask, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + sidx, mask=mask, other=0.0).to(tl.float32)
    tl.store(w_ptr + (out_row0 + rows[:, None]) * K + offs_k[None, :],
             ((q - z) * s).to(w_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=['G', 'GS', *KERNEL_SIZES])
def _dequant_kernel(w_ptr, w16_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, n16, n8, n4, n3, n2,
                    wpr8, wpr4, wpr3, wpr2, r8, q8, w8, r4, q4, w4, r3, q3, w3, r2, q2, w2,
                    PER_ROW: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    k0 = tl.program_id(1) * BLOCK_K
    t16 = tl.cdiv(n16, BLOCK_N)
    t8 = t16 + tl.cdiv(n8, BLOCK_N)
    t4 = t8 + tl.cdiv(n4, BLOCK_N)
    t3 = t4 + tl.cdiv(n3, BLOCK_N)
    local = tl.arange(0, BLOCK_N)
    if pid < t16:
        rows = pid * BLOCK_N + local
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask = (rows[:, None] < n16) & (offs_k[None, :] < K)
        ptrs = rows[:, None] * K + offs_k[None, :]
        tl.store(w_ptr + ptrs, tl.load(w16_ptr + ptrs, mask=mask, other=0.0)
                 .to(w_ptr.dtype.element_ty), mask=mask)
    elif pid < t8:
        _dequant_words(w_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, k0,
                       (pid - t16) * BLOCK_N + local, n8, r8, w8, wpr8, q8, 8, PER_ROW,
                       BLOCK_N, BLOCK_K)
    elif pid < t4:
        _dequant_words(w_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, k0,
                       (pid - t8) * BLOCK_N + local, n4, r4, w4, wpr4, q4, 4,
                       PER_ROW, BLOCK_N, BLOCK_K)
    elif pid < t3:
        _dequant_gather(w_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, k0,
                        (pid - t4) * BLOCK_N + local, n3, r3, w3, wpr3, q3, 3, BLOCK_N,
                        BLOCK_K)
    else:
        _dequant_words(w_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, k0,
                       (pid - t3) * BLOCK_N + local, n2, r2, w2, wpr2, q2, 2, PER_ROW,
                       BLOCK_N, BLOCK_K)


def dequantize_packed(layout: PackedLayout, dtype: torch.dtype,
                      block=(16, 256)) -> torch.Tensor:
    """Return the kept rows (R, K) in packed order and ``dtype``, with one Triton launch."""
    k = layout.in_features
    if not supports(layout):
        raise ValueError(f'dequantize_packed needs per-row scales or group_size % 16 == 0, '
                         f'got group_size {layout.group_size}')
    counts = layout.host_counts
    w = torch.empty(sum(counts), k, dtype=dtype, device=layout.perm.device)
    if w.numel() == 0:
        return w
    bn, bk = block
    grid = (sum(triton.cdiv(c, bn) for c in counts), triton.cdiv(k, bk))
    _dequant_kernel[grid](w, layout.weight16, layout.qweight, layout.scales, layout.zeros,
                          k, k // layout.group_size, layout.group_size, *layout.kernel_sizes,
                          PER_ROW=layout.group_size == k, BLOCK_N=bn, BLOCK_K=bk)
    return w


def dequant_linear(x: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
    """Return x (..., K) through the packed layer: transient dense weight + ``F.linear``."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, layout.in_features)
    n = layout.out_features
    perm = layout.perm.long()
    bias = None if layout.bias is None else layout.bias.to(x.dtype)[perm]
    y = F.linear(x2, dequantize_packed(layout, x.dtype), bias)          # (M, R)
    out = layout.output_buffer(x2.shape[0], x.dtype, x.device)          # (M, N)
    return out.index_copy_(1, perm, y).reshape(*lead, n)
