# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Fused dequantize-matmul over the bit groups of a packed layer, one launch per group.

Contract: ``mixed_linear(x, layout)`` == ``reference_linear(x, layout)`` up to fp32
accumulation order, for x (M, K) fp16/bf16 (fp32 too under TRITON_INTERPRET).

Grid: (tiles over packed rows, tiles over M). Each program owns BLOCK_N consecutive rows of
one bit group: tiles never straddle groups, so the program branches once on its group and
runs a K loop specialised for that width (BITS is a constexpr in each branch). Codes are
expanded in registers as (q - zero) * scale, multiplied with ``tl.dot`` into an fp32
accumulator, and the epilogue adds the bias and writes column ``perm[row]``, undoing the
row permutation. Pruned columns are pre-filled with the bias on the host. By default each
non-empty group gets its own launch, compiled for its width alone (constexpr WIDTH): a kernel
holding all five branches is register-allocated for them together and spills at most tiles
(``bench/ptx_mixed.py``); ``split=False`` keeps the single launch.

W4A8 (``x_scale`` given): x holds int8 per-token codes q_x with scales s_x. A quantized row's
codes shift to q - 2^(b-1), which fit int8, so each K block is one exact int8 tensor-core
MMA into int32, and (q - z) . q_x = (q - c) . q_x + (c - z) sum q_x (c = 2^(b-1)) restores
the zero-point per block (a block stays inside one scale group); 16-bit rows take q_x in
their float dtype (exact). The epilogue multiplies by s_x.

This module imports triton at import; import it only through ``qvla_ros.kernels.dispatch``.
"""

import functools
import os
from typing import Optional

import torch
import triton
import triton.language as tl

from qvla_ros.kernels.format import GROUP_BITS, KERNEL_SIZES, PackedLayout

INT8_MIN_BLOCK_K = 32  # an int8 MMA's K step (m16n8k32, wgmma k32)


@triton.jit
def _load_x(x_ptr, stride_xm, offs_m, offs_k, M, K):
    mask = (offs_m[:, None] < M) & (offs_k[None, :] < K)
    return tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :], mask=mask, other=0.0)


@triton.jit
def _accumulate(acc, x, w, BLOCK_M: tl.constexpr):
    # acc is (BLOCK_N, BLOCK_M): out^T = W x^T, so the weight tile, expanded in registers, is
    # the MMA's A operand (Hopper's wgmma takes A from registers, B only from shared memory).
    if BLOCK_M == 1:  # GEMV: a dot would pad M to 16; a broadcast-multiply-sum is leaner
        acc += tl.sum(w.to(tl.float32) * x.to(tl.float32), axis=1)[:, None]
    else:
        acc += tl.dot(w.to(x.dtype), tl.trans(x))
    return acc


@triton.jit
def _dot_int8(w, x, BLOCK_M: tl.constexpr):
    # (BLOCK_N, BLOCK_K) int8 codes x (BLOCK_M, BLOCK_K) int8 tokens -> (BLOCK_N, BLOCK_M)
    # int32, exact: the int8 tensor-core MMA, or a multiply-sum for the GEMV.
    if BLOCK_M == 1:
        return tl.sum(w.to(tl.int32) * x.to(tl.int32), axis=1)[:, None]
    return tl.dot(w, tl.trans(x), out_dtype=tl.int32)


@triton.jit
def _tile_dense(x_ptr, w_ptr, stride_xm, M, K, offs_m, rows, nrows, INT8_X: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    mask_n = rows < nrows
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = _load_x(x_ptr, stride_xm, offs_m, offs_k, M, K)
        w = tl.load(w_ptr + rows[:, None] * K + offs_k[None, :],
                    mask=mask_n[:, None] & (offs_k[None, :] < K), other=0.0)
        if INT8_X:  # 16-bit rows meet int8 codes in the weight's float dtype (exact)
            x = x.to(w.dtype)
        acc = _accumulate(acc, x, w, BLOCK_M)
    return acc


@triton.jit
def _tile_quant(x_ptr, qw_ptr, s_ptr, z_ptr, stride_xm, M, K, G, GS, offs_m, rows, nrows,
                word_start, wpr, qrow_start, BITS: tl.constexpr, PER_ROW: tl.constexpr,
                INT8_X: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    VPW: tl.constexpr = 32 // BITS
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    mask_n = rows < nrows
    qrows = qrow_start + rows
    if PER_ROW and not INT8_X:
        s_row = tl.load(s_ptr + qrows * G, mask=mask_n, other=0.0).to(tl.float32)
        z_row = tl.load(z_ptr + qrows * G, mask=mask_n, other=0.0).to(tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask = mask_n[:, None] & (offs_k[None, :] < K)
        x = _load_x(x_ptr, stride_xm, offs_m, offs_k, M, K)
        if VPW == 10:  # 3-bit: 10 codes per word is not a power of two, gather per code
            word = tl.load(qw_ptr + word_start + rows[:, None] * wpr + offs_k[None, :] // VPW,
                           mask=mask, other=0)
            q = (word >> ((offs_k[None, :] % VPW) * BITS)) & ((1 << BITS) - 1)
        else:  # load each word once, expand its VPW codes in registers: (BN, BK/VPW, VPW)
            offs_w = k0 // VPW + tl.arange(0, BLOCK_K // VPW)
            word = tl.load(qw_ptr + word_start + rows[:, None] * wpr + offs_w[None, :],
                           mask=mask_n[:, None] & (offs_w[None, :] < wpr), other=0)
            shifts = tl.arange(0, VPW) * BITS
            q = (word[:, :, None] >> shifts[None, None, :]) & ((1 << BITS) - 1)
            q = tl.reshape(q, (BLOCK_N, BLOCK_K))
        if INT8_X:
            acc = _accumulate_int8(acc, x, q, s_ptr, z_ptr, qrows * G + k0 // GS, mask_n,
                                   BITS, BLOCK_M)
        else:
            if PER_ROW:
                w = (q.to(tl.float32) - z_row[:, None]) * s_row[:, None]
            else:
                sidx = qrows[:, None] * G + offs_k[None, :] // GS
                s = tl.load(s_ptr + sidx, mask=mask, other=0.0).to(tl.float32)
                z = tl.load(z_ptr + sidx, mask=mask, other=0.0).to(tl.float32)
                w = (q.to(tl.float32) - z) * s
            acc = _accumulate(acc, x, w, BLOCK_M)
    return acc


@triton.jit
def _accumulate_int8(acc, x, q, s_ptr, z_ptr, sidx, mask_n, BITS: tl.constexpr,
                     BLOCK_M: tl.constexpr):
    # One K block inside one scale group (BLOCK_K divides GS): with c = 2^(b-1), the codes
    # shifted to q - c fit int8 and sum_k (q - z) x = sum_k (q - c) x + (c - z) sum_k x, so
    # acc += ((q - c) . x + (c - z) sum x) s; the token's scale multiplies in the epilogue.
    C: tl.constexpr = 1 << (BITS - 1)
    d = _dot_int8((q - C).to(tl.int8), x, BLOCK_M)                          # (BN, BM) int32
    xsum = tl.sum(x.to(tl.int32), axis=1).to(tl.float32)                    # (BM,)
    s = tl.load(s_ptr + sidx, mask=mask_n, other=0.0).to(tl.float32)        # (BN,)
    z = tl.load(z_ptr + sidx, mask=mask_n, other=0.0).to(tl.float32)
    return acc + (d.to(tl.float32) + (C - z)[:, None] * xsum[None, :]) * s[:, None]


@triton.jit
def _store(out_ptr, acc, perm_ptr, bias_ptr, xs_ptr, stride_om, M, offs_m, packed_rows, rows,
           nrows, HAS_BIAS: tl.constexpr, INT8_X: tl.constexpr):
    mask_n = rows < nrows
    cols = tl.load(perm_ptr + packed_rows, mask=mask_n, other=0)
    if INT8_X:  # out = (W q_x) s_x: each token's scale, once per output
        acc *= tl.load(xs_ptr + offs_m, mask=offs_m < M, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=mask_n, other=0.0).to(tl.float32)[:, None]
    mask = mask_n[:, None] & (offs_m[None, :] < M)  # acc is (BLOCK_N, BLOCK_M)
    tl.store(out_ptr + offs_m[None, :] * stride_om + cols[:, None],
             acc.to(out_ptr.dtype.element_ty), mask=mask)


_NO_SPECIALIZE = ['M', 'G', 'GS', *KERNEL_SIZES, 'N_OUT']


@triton.jit
def _quant_group(x_ptr, out_ptr, qw_ptr, s_ptr, z_ptr, perm_ptr, bias_ptr, xs_ptr, M, K, G, GS,
                 stride_xm, stride_om, offs_m, rows, nrows, r0, q0, w0, wpr,
                 BITS: tl.constexpr, HAS_BIAS: tl.constexpr, PER_ROW: tl.constexpr,
                 INT8_X: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # One tile of a quantized group: rows (BLOCK_N,) local to the group, which starts at
    # packed row r0, quantized row q0 and word w0.
    acc = _tile_quant(x_ptr, qw_ptr, s_ptr, z_ptr, stride_xm, M, K, G, GS, offs_m, rows,
                      nrows, w0, wpr, q0, BITS, PER_ROW, INT8_X, BLOCK_M, BLOCK_N, BLOCK_K)
    _store(out_ptr, acc, perm_ptr, bias_ptr, xs_ptr, stride_om, M, offs_m, r0 + rows, rows,
           nrows, HAS_BIAS, INT8_X)


@triton.jit(do_not_specialize=_NO_SPECIALIZE)
def _mixed_kernel(x_ptr, out_ptr, w16_ptr, qw_ptr, s_ptr, z_ptr, perm_ptr, bias_ptr, xs_ptr,
                  M, K, G, GS, stride_xm, stride_om,
                  n16, n8, n4, n3, n2, wpr8, wpr4, wpr3, wpr2,
                  r8, q8, w8, r4, q4, w4, r3, q3, w3, r2, q2, w2, N_OUT,
                  HAS_BIAS: tl.constexpr, PER_ROW: tl.constexpr, INT8_X: tl.constexpr,
                  WIDTH: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # N_OUT (out_features) is unused here: it is the autotuning key, so that layers of one
    # shape share a tuned tile whatever their bit-group sizes. INT8_X: x holds int8 token
    # codes and xs_ptr their (M,) scales (W4A8 on int8 tensor cores); else xs_ptr is unread.
    # WIDTH 0 compiles every group's branch; WIDTH b compiles group b's alone (the host zeroes
    # the other counts), so registers are allocated for one K loop and do not spill.
    pid_n = tl.program_id(0)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    t16 = tl.cdiv(n16, BLOCK_N)
    t8 = t16 + tl.cdiv(n8, BLOCK_N)
    t4 = t8 + tl.cdiv(n4, BLOCK_N)
    t3 = t4 + tl.cdiv(n3, BLOCK_N)
    local = tl.arange(0, BLOCK_N)
    args = (x_ptr, out_ptr, qw_ptr, s_ptr, z_ptr, perm_ptr, bias_ptr, xs_ptr, M, K, G, GS,
            stride_xm, stride_om, offs_m)
    if pid_n < t16:
        if WIDTH == 0 or WIDTH == 16:
            rows = pid_n * BLOCK_N + local
            acc = _tile_dense(x_ptr, w16_ptr, stride_xm, M, K, offs_m, rows, n16, INT8_X,
                              BLOCK_M, BLOCK_N, BLOCK_K)
            _store(out_ptr, acc, perm_ptr, bias_ptr, xs_ptr, stride_om, M, offs_m, rows, rows,
                   n16, HAS_BIAS, INT8_X)
    elif pid_n < t8:
        if WIDTH == 0 or WIDTH == 8:
            _quant_group(*args, (pid_n - t16) * BLOCK_N + local, n8, r8, q8, w8, wpr8, 8,
                         HAS_BIAS, PER_ROW, INT8_X, BLOCK_M, BLOCK_N, BLOCK_K)
    elif pid_n < t4:
        if WIDTH == 0 or WIDTH == 4:
            _quant_group(*args, (pid_n - t8) * BLOCK_N + local, n4, r4, q4, w4, wpr4, 4,
                         HAS_BIAS, PER_ROW, INT8_X, BLOCK_M, BLOCK_N, BLOCK_K)
    elif pid_n < t3:
        if WIDTH == 0 or WIDTH == 3:
            _quant_group(*args, (pid_n - t4) * BLOCK_N + local, n3, r3, q3, w3, wpr3, 3,
                         HAS_BIAS, PER_ROW, INT8_X, BLOCK_M, BLOCK_N, BLOCK_K)
    else:
        if WIDTH == 0 or WIDTH == 2:
            _quant_group(*args, (pid_n - t3) * BLOCK_N + local, n2, r2, q2, w2, wpr2, 2,
                         HAS_BIAS, PER_ROW, INT8_X, BLOCK_M, BLOCK_N, BLOCK_K)


def _configs():
    out = []
    for bm, bn, bk, warps, stages in [
            (1, 8, 512, 4, 2), (1, 16, 256, 4, 2), (1, 16, 512, 4, 3), (1, 32, 256, 4, 2),
            (1, 64, 128, 4, 2), (1, 64, 256, 4, 3),
            (16, 64, 64, 4, 2), (16, 128, 64, 4, 3), (16, 64, 128, 4, 3),
            (32, 64, 64, 4, 3), (32, 128, 64, 4, 3),
            (64, 64, 64, 4, 3), (64, 128, 64, 4, 3), (64, 128, 32, 4, 4),
            (128, 128, 32, 8, 3), (128, 128, 64, 8, 3), (128, 64, 64, 4, 3)]:
        out.append(triton.Config({'BLOCK_M': bm, 'BLOCK_N': bn, 'BLOCK_K': bk},
                                 num_warps=warps, num_stages=stages))
    return out


def prune_configs(configs, named_args, **kwargs):
    """Keep configs whose BLOCK_M suits M: GEMV tiles for M == 1, dot tiles otherwise.

    With int8 tokens (``INT8_X``) a K block must also lie inside one scale group.
    """
    if kwargs.get('INT8_X'):
        configs = _inside_groups(configs, named_args['GS'], named_args['K'])
    m = named_args['M']
    if m == 1:
        return [c for c in configs if c.kwargs['BLOCK_M'] == 1]
    fit = [c for c in configs if 1 < c.kwargs['BLOCK_M'] <= max(16, triton.next_power_of_2(m))]
    return fit or [c for c in configs if c.kwargs['BLOCK_M'] > 1]


def int8_block_k(block_k: int, group_size: int, k: int) -> int:
    """Return the K block of the int8 path: ``block_k``, shrunk to divide a group (< K)."""
    if group_size >= k:  # per-row scales: any block
        return block_k
    while group_size % block_k:
        block_k //= 2
    return block_k


def int8_supported(group_size: int, k: int) -> bool:
    """Return True when int8 tokens fit the layer: per-row scales, or groups of 32n columns.

    A K block must lie inside one group and an int8 MMA takes K in steps of 32.
    """
    return group_size >= k or group_size % INT8_MIN_BLOCK_K == 0


def _inside_groups(configs, group_size: int, k: int):
    """Return ``configs`` with each K block shrunk to fit a scale group, duplicates dropped."""
    out: dict = {}
    for c in configs:
        bk = int8_block_k(c.kwargs['BLOCK_K'], group_size, k)
        key = (c.kwargs['BLOCK_M'], c.kwargs['BLOCK_N'], bk, c.num_warps, c.num_stages)
        out.setdefault(key, triton.Config({**c.kwargs, 'BLOCK_K': bk}, num_warps=c.num_warps,
                                          num_stages=c.num_stages))
    return list(out.values())


def interpreting() -> bool:
    """Return True under TRITON_INTERPRET=1 (CPU interpreter: one fixed config, no autotune)."""
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def quick_bench(fn, quantiles=None, **kwargs):
    """Autotuner timing: a short do_bench (5 ms warm-up, 20 ms of repetitions) per config."""
    return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)


@functools.lru_cache(maxsize=1)
def _autotuned():
    return triton.autotune(configs=_configs(), key=['M', 'K', 'N_OUT', 'GS', 'WIDTH'],
                           prune_configs_by={'early_config_prune': prune_configs},
                           do_bench=quick_bench)(_mixed_kernel)


def _launches(layout: PackedLayout, split: bool):
    """Yield (WIDTH, kernel sizes, row count) per launch: one per non-empty group, or one."""
    sizes = layout.kernel_sizes
    counts = layout.host_counts
    if not split:
        yield 0, sizes, counts
        return
    for i, (bits, count) in enumerate(zip(GROUP_BITS, counts)):
        if count:  # the other groups' counts zeroed: every tile of this launch is group i's
            only = tuple(c if j == i else 0 for j, c in enumerate(counts))
            yield bits, (*only, *sizes[len(counts):]), (count,)


def mixed_linear(x: torch.Tensor, layout: PackedLayout, block=None,
                 x_scale: Optional[torch.Tensor] = None,
                 out_dtype: Optional[torch.dtype] = None, split: bool = True) -> torch.Tensor:
    """Return x (..., K) through the packed layer with fused launches.

    ``block`` = (BLOCK_M, BLOCK_N, BLOCK_K) fixes the tile (always used when interpreting).
    With ``x_scale`` (...,) x holds int8 per-token codes and the layer computes
    W (x * x_scale) on int8 tensor cores, returned in ``out_dtype`` (default float16).
    ``split`` launches the kernel once per bit group, each compiled for its width alone (fewer
    register spills, docs/kernels.md); ``split=False`` is one launch for all groups.
    """
    lead = x.shape[:-1]
    x2 = x.reshape(-1, layout.in_features).contiguous()
    m, n, k = x2.shape[0], layout.out_features, layout.in_features
    int8 = x_scale is not None
    if int8 and x2.dtype != torch.int8:
        raise ValueError(f'int8 tokens expected with x_scale, got {x2.dtype}')
    if int8 and not int8_supported(layout.group_size, k):
        raise ValueError(f'int8 tokens need per-row scales or groups of a multiple of '
                         f'{INT8_MIN_BLOCK_K} columns, got groups of {layout.group_size}')
    dtype = (out_dtype or torch.float16) if int8 else x.dtype
    xs = layout.scales if x_scale is None else x_scale.reshape(-1).float().contiguous()
    has_bias = layout.bias is not None
    out = layout.output_buffer(m, dtype, x.device)
    head = (x2, out, layout.weight16, layout.qweight, layout.scales, layout.zeros, layout.perm,
            layout.bias if has_bias else layout.scales, xs, m, k, k // layout.group_size,
            layout.group_size, x2.stride(0), out.stride(0))
    flags = dict(HAS_BIAS=has_bias, PER_ROW=layout.group_size == k, INT8_X=int8)
    if block is None and interpreting():
        block = (1 if m == 1 else 16, 32, 32)
    for width, sizes, counts in _launches(layout, split):
        args = (*head, *sizes, n)
        if block is not None:
            bm, bn, bk = block
            if int8:
                bk = int8_block_k(bk, layout.group_size, k)
            fixed = (sum(triton.cdiv(c, bn) for c in counts), triton.cdiv(m, bm))
            _mixed_kernel[fixed](*args, **flags, WIDTH=width, BLOCK_M=bm, BLOCK_N=bn,
                                 BLOCK_K=bk)
        else:
            def grid(meta, counts=counts):
                return (sum(triton.cdiv(c, meta['BLOCK_N']) for c in counts),
                        triton.cdiv(m, meta['BLOCK_M']))
            _autotuned()[grid](*args, **flags, WIDTH=width)
    return out.reshape(*lead, n)
