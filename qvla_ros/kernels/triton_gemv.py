# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Decode-time (M = 1) GEMV over all bit groups of a packed layer, in one Triton launch.

Contract: ``mixed_gemv(x, layout)`` == ``reference_linear(x, layout)`` up to fp32
accumulation order, for x (1, K) or (K,) in fp16/bf16 (fp32 too under TRITON_INTERPRET).

Why a separate kernel: the tiled kernel of :mod:`qvla_ros.kernels.triton_mixed` reduces over
K inside its loop (a cross-thread reduction per K step) and reshapes each word tile into a
(rows, K) tile, a layout conversion through shared memory. At M = 1 the layer is purely
memory-bound: the only work that matters is streaming the packed words once. Here each
program owns BLOCK_N packed rows of one bit group; per K step it loads a (BLOCK_N, BLOCK_K /
VPW) tile of words, expands it in registers to (BLOCK_N, BLOCK_K / VPW, VPW) codes, and adds
``code * x`` elementwise into an fp32 accumulator of that shape. The one reduction over K
happens after the loop. With per-row quantization the affine grid is factored out of the
loop (paper Eq. 2, w_hat = (q - z) s):

    sum_k (q_k - z) s x_k = s (sum_k q_k x_k - z sum_k x_k)        # (BLOCK_N,)

so the loop body is one multiply-add per code. Per-group scales need ``group_size`` to be a
multiple of the codes per word, so that each word lies in one group; 3-bit rows (10 codes per
word, not a power of two) gather codes per column instead. The epilogue adds the bias and
writes column ``perm[row]``.

This module imports triton at import; import it only through ``qvla_ros.kernels.dispatch``.
"""

import functools

import torch
import triton
import triton.language as tl

from qvla_ros.kernels.format import KERNEL_SIZES, PackedLayout
from qvla_ros.kernels.triton_mixed import interpreting, quick_bench


@triton.jit
def _gemv_dense(x_ptr, w_ptr, K, rows, nrows, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    mask_n = rows < nrows
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_k, mask=offs_k < K, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + rows[:, None] * K + offs_k[None, :],
                    mask=mask_n[:, None] & (offs_k[None, :] < K), other=0.0)
        acc += w.to(tl.float32) * x[None, :]
    return tl.sum(acc, axis=1)  # (BLOCK_N,)


@triton.jit
def _row_affine(s_ptr, z_ptr, qrows, mask_n, G):
    s = tl.load(s_ptr + qrows * G, mask=mask_n, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + qrows * G, mask=mask_n, other=0.0).to(tl.float32)
    return s, z


@triton.jit
def _gemv_words(x_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, rows, nrows, word_start, wpr,
                qrow_start, BITS: tl.constexpr, PER_ROW: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    VPW: tl.constexpr = 32 // BITS
    BW: tl.constexpr = BLOCK_K // VPW
    mask_n = rows < nrows
    qrows = qrow_start + rows
    acc = tl.zeros((BLOCK_N, BW, VPW), dtype=tl.float32)
    xacc = tl.zeros((BW, VPW), dtype=tl.float32)
    shifts = tl.arange(0, VPW) * BITS
    for k0 in range(0, K, BLOCK_K):
        offs_w = k0 // VPW + tl.arange(0, BW)                            # (BW,)
        offs_k = offs_w[:, None] * VPW + tl.arange(0, VPW)[None, :]      # (BW, VPW)
        x = tl.load(x_ptr + offs_k, mask=offs_k < K, other=0.0).to(tl.float32)
        wmask = mask_n[:, None] & (offs_w[None, :] < wpr)
        word = tl.load(qw_ptr + word_start + rows[:, None] * wpr + offs_w[None, :],
                       mask=wmask, other=0)                              # (BN, BW)
        q = ((word[:, :, None] >> shifts[None, None, :]) & ((1 << BITS) - 1)).to(tl.float32)
        if PER_ROW:
            acc += q * x[None, :, :]
            xacc += x
        else:  # each word lies in one group (GS % VPW == 0, checked on the host)
            sidx = qrows[:, None] * G + (offs_w[None, :] * VPW) // GS    # (BN, BW)
            s = tl.load(s_ptr + sidx, mask=wmask, other=0.0).to(tl.float32)
            z = tl.load(z_ptr + sidx, mask=wmask, other=0.0).to(tl.float32)
            acc += (q - z[:, :, None]) * s[:, :, None] * x[None, :, :]
    dot = tl.sum(tl.sum(acc, axis=2), axis=1)                            # (BN,)
    if PER_ROW:
        s, z = _row_affine(s_ptr, z_ptr, qrows, mask_n, G)
        dot = s * (dot - z * tl.sum(tl.sum(xacc, axis=1), axis=0))
    return dot


@triton.jit
def _gemv_gather(x_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, rows, nrows, word_start, wpr,
                 qrow_start, BITS: tl.constexpr, PER_ROW: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    VPW: tl.constexpr = 32 // BITS  # 10 for 3-bit: codes are gathered column by column
    mask_n = rows < nrows
    qrows = qrow_start + rows
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_k, mask=offs_k < K, other=0.0).to(tl.float32)
        mask = mask_n[:, None] & (offs_k[None, :] < K)
        word = tl.load(qw_ptr + word_start + rows[:, None] * wpr + offs_k[None, :] // VPW,
                       mask=mask, other=0)
        q = ((word >> ((offs_k[None, :] % VPW) * BITS)) & ((1 << BITS) - 1)).to(tl.float32)
        if PER_ROW:
            s, z = _row_affine(s_ptr, z_ptr, qrows, mask_n, G)
            w = (q - z[:, None]) * s[:, None]
        else:
            sidx = qrows[:, None] * G + offs_k[None, :] // GS
            w = ((q - tl.load(z_ptr + sidx, mask=mask, other=0.0).to(tl.float32))
                 * tl.load(s_ptr + sidx, mask=mask, other=0.0).to(tl.float32))
        acc += w * x[None, :]
    return tl.sum(acc, axis=1)


@triton.jit
def _store_row(out_ptr, val, perm_ptr, bias_ptr, packed_rows, rows, nrows,
               HAS_BIAS: tl.constexpr):
    mask_n = rows < nrows
    cols = tl.load(perm_ptr + packed_rows, mask=mask_n, other=0)
    if HAS_BIAS:
        val += tl.load(bias_ptr + cols, mask=mask_n, other=0.0).to(tl.float32)
    tl.store(out_ptr + cols, val.to(out_ptr.dtype.element_ty), mask=mask_n)


_NO_SPECIALIZE = ['G', 'GS', *KERNEL_SIZES, 'N_OUT']


@triton.jit(do_not_specialize=_NO_SPECIALIZE)
def _gemv_kernel(x_ptr, out_ptr, w16_ptr, qw_ptr, s_ptr, z_ptr, perm_ptr, bias_ptr,
                 K, G, GS, n16, n8, n4, n3, n2, wpr8, wpr4, wpr3, wpr2,
                 r8, q8, w8, r4, q4, w4, r3, q3, w3, r2, q2, w2, N_OUT,
                 HAS_BIAS: tl.constexpr, PER_ROW: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)  # N_OUT: autotuning key only, as in triton_mixed
    t16 = tl.cdiv(n16, BLOCK_N)
    t8 = t16 + tl.cdiv(n8, BLOCK_N)
    t4 = t8 + tl.cdiv(n4, BLOCK_N)
    t3 = t4 + tl.cdiv(n3, BLOCK_N)
    local = tl.arange(0, BLOCK_N)
    if pid < t16:
        rows = pid * BLOCK_N + local
        val = _gemv_dense(x_ptr, w16_ptr, K, rows, n16, BLOCK_N, BLOCK_K)
        _store_row(out_ptr, val, perm_ptr, bias_ptr, rows, rows, n16, HAS_BIAS)
    elif pid < t8:
        rows = (pid - t16) * BLOCK_N + local
        val = _gemv_words(x_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, rows, n8, w8, wpr8, q8,
                          8, PER_ROW, BLOCK_N, BLOCK_K)
        _store_row(out_ptr, val, perm_ptr, bias_ptr, r8 + rows, rows, n8, HAS_BIAS)
    elif pid < t4:
        rows = (pid - t8) * BLOCK_N + local
        val = _gemv_words(x_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, rows, n4, w4, wpr4, q4,
                          4, PER_ROW, BLOCK_N, BLOCK_K)
        _store_row(out_ptr, val, perm_ptr, bias_ptr, r4 + rows, rows, n4, HAS_BIAS)
    elif pid < t3:
        rows = (pid - t4) * BLOCK_N + local
        val = _gemv_gather(x_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, rows, n3, w3, wpr3, q3, 3,
                           PER_ROW, BLOCK_N, BLOCK_K)
        _store_row(out_ptr, val, perm_ptr, bias_ptr, r3 + rows, rows, n3, HAS_BIAS)
    else:
        rows = (pid - t3) * BLOCK_N + local
        val = _gemv_words(x_ptr, qw_ptr, s_ptr, z_ptr, K, G, GS, rows, n2, w2, wpr2, q2, 2,
                          PER_ROW, BLOCK_N, BLOCK_K)
        _store_row(out_ptr, val, perm_ptr, bias_ptr, r2 + rows, rows, n2, HAS_BIAS)


# (BLOCK_N, BLOCK_K, warps): few rows per program keeps >= 1000 programs on 4096-row layers
# (the H100 has 132 SMs); BLOCK_K >= 256 keeps each row's word loads >= 128 bytes for 4-bit.
GEMV_CONFIGS = ((2, 1024, 4), (4, 512, 4), (4, 1024, 4), (8, 512, 4), (8, 256, 4),
                (16, 256, 4), (4, 512, 2), (8, 1024, 8))


def supports(layout: PackedLayout) -> bool:
    """Return True when the GEMV kernel can run ``layout`` (per-row, or groups of 16k)."""
    return layout.group_size == layout.in_features or layout.group_size % 16 == 0


@functools.lru_cache(maxsize=1)
def _autotuned():
    configs = [triton.Config({'BLOCK_N': bn, 'BLOCK_K': bk}, num_warps=w)
               for bn, bk, w in GEMV_CONFIGS]
    return triton.autotune(configs=configs, key=['K', 'N_OUT'],
                           do_bench=quick_bench)(_gemv_kernel)


def mixed_gemv(x: torch.Tensor, layout: PackedLayout, block=None) -> torch.Tensor:
    """Return x (1, K) or (K,) through the packed layer with one launch; shape as x.

    ``block`` = (BLOCK_N, BLOCK_K) fixes the tile (always used when interpreting).
    """
    k, n = layout.in_features, layout.out_features
    if x.shape[-1] != k or x.numel() != k:
        raise ValueError(f'mixed_gemv expects one row of {k} features, got {tuple(x.shape)}')
    if not supports(layout):
        raise ValueError(f'mixed_gemv needs per-row scales or group_size % 16 == 0, got '
                         f'group_size {layout.group_size}')
    x1 = x.reshape(k).contiguous()
    counts = layout.host_counts
    has_bias = layout.bias is not None
    out = layout.output_buffer(1, x.dtype, x.device)[0]  # (N,)
    args = (x1, out, layout.weight16, layout.qweight, layout.scales, layout.zeros, layout.perm,
            layout.bias if has_bias else layout.scales, k, k // layout.group_size,
            layout.group_size, *layout.kernel_sizes, n)
    flags = dict(HAS_BIAS=has_bias, PER_ROW=layout.group_size == k)
    if block is None and interpreting():
        block = (8, 64)
    if block is not None:
        bn, bk = block
        _gemv_kernel[(sum(triton.cdiv(c, bn) for c in counts),)](*args, **flags, BLOCK_N=bn,
                                                                 BLOCK_K=bk)
    else:
        def grid(meta):
            return (sum(triton.cdiv(c, meta['BLOCK_N']) for c in counts),)
        _autotuned()[grid](*args, **flags)
    return out.reshape(*x.shape[:-1], n)
