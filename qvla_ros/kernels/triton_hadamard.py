# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Online input rotation and per-token activation rounding of a layer, fused in one launch.

Contract: ``rotate_quant_tokens(x, signs, block, inv_scale, bits, clip)`` equals the plain-torch
path of ``qvla_ros.quant.apply.QuantizedLinear`` before its inner layer -- ``Rotation`` (random
signs d, then Sylvester Hadamard blocks H_n / sqrt(n)), times ``inv_scale``, then
``fake_quant_tokens`` (per-token symmetric grid spanning ``clip`` x the token's absmax) -- up
to float32 summation order, for blocks of order n = 2^a, 16 <= n <= 4096 (``supports``).

Why: the torch path is log2(n) butterfly passes plus the sign, scale, absmax, round and clamp
passes, each a launch that reads and writes (M, K). Here one program owns one token and reads
it in tiles T of R x N1 contiguous values, N1 = min(n, 64). With n = N2 N1 (Sylvester:
H_n = H_N2 (x) H_N1) the rows of T are the N1-chunks of R / N2 whole blocks, and their
rotation is L (T D) H_N1 with L = I_(R/N2) (x) H_N2, R = max(16, N2): two small dots against
+-1 matrices (tl.dot needs 16 per side, and fp32 operands of 64 x 64 keep shared memory
small). With n <= 64 each row is a block and L = I is skipped. A quantized token is rotated
twice (once for its absmax, once to round): two small dots instead of a (M, K) float32 round
trip through memory.

This module imports triton at import; import it only through ``qvla_ros.kernels.dispatch``.
"""

import functools
import math
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

MIN_BLOCK, MAX_BLOCK = 16, 4096  # tl.dot needs 16 per side; N1, N2 <= 64 each
MIN_ROWS, MAX_N1 = 16, 64


def supports(block: int) -> bool:
    """Return True when a Sylvester block of order ``block`` runs in this kernel."""
    return MIN_BLOCK <= block <= MAX_BLOCK and block & (block - 1) == 0


def factors(block: int) -> Tuple[int, int, int]:
    """Return (R, N2, N1): tile rows, and N2 N1 = block with N1 = min(block, 64)."""
    n1 = min(block, MAX_N1)
    n2 = block // n1
    return max(MIN_ROWS, n2), n2, n1


def num_warps(rows: int, n1: int) -> int:
    """Return the warps of a program: 8 for tiles of 4096 values (4 spill more; ptx_rotation)."""
    return 8 if rows * n1 >= 4096 else 4


@functools.lru_cache(maxsize=None)
def _left(rows: int, n2: int, device: str) -> torch.Tensor:
    """Return L = I_(rows / n2) (x) H_n2 (rows, rows), float32."""
    return torch.kron(torch.eye(rows // n2), _sylvester(n2, 'cpu')).to(device)


@functools.lru_cache(maxsize=None)
def _sylvester(n: int, device: str) -> torch.Tensor:
    """Return H_n (n, n), entries +-1, float32 (H_{2m} = [[H_m, H_m], [H_m, -H_m]])."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h.to(device)


@triton.jit
def _round_half_even(v):
    # torch.round's ties-to-even, from floor (libdevice.rint has no interpreter version).
    r = tl.floor(v + 0.5)
    odd = (r - 2.0 * tl.floor(r * 0.5)) != 0.0
    return tl.where(((r - v) == 0.5) & odd, r - 1.0, r)


@triton.jit
def _rotated_tile(x_ptr, s_ptr, inv_ptr, h1_ptr, h2_ptr, row, k0, K, norm,
                  R: tl.constexpr, N1: tl.constexpr, KRON: tl.constexpr,
                  HAS_INV: tl.constexpr):
    # The tile of values k0 .. k0 + R N1 of one token, rotated: (R, N1) float32, 0 past K.
    # H_N1 and L = I (x) H_N2 (R, R) are read per tile (from cache): held across the loop
    # they would take the registers a 64 x 64 tile needs (ptxas: spills at n = 4096).
    offs = k0 + tl.arange(0, R)[:, None] * N1 + tl.arange(0, N1)[None, :]  # (R, N1)
    mask = offs < K
    t = tl.load(x_ptr + row * K + offs, mask=mask, other=0.0).to(tl.float32)
    t = t * tl.load(s_ptr + offs, mask=mask, other=0).to(tl.float32)         # T D
    c1 = tl.arange(0, N1)
    h1 = tl.load(h1_ptr + c1[:, None] * N1 + c1[None, :])                   # (N1, N1)
    t = tl.dot(t, h1, input_precision='ieee')                                # (T D) H_N1
    if KRON:
        c2 = tl.arange(0, R)
        h2 = tl.load(h2_ptr + c2[:, None] * R + c2[None, :])                # L (R, R)
        t = tl.dot(h2, t, input_precision='ieee')                            # L (T D) H_N1
    t = t / norm
    if HAS_INV:
        t = t * tl.load(inv_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    return t, offs, mask


@triton.jit
def _rotate_quant_kernel(x_ptr, out_ptr, s_ptr, inv_ptr, h1_ptr, h2_ptr, sc_ptr, K, norm, clip,
                         qmax, R: tl.constexpr, N1: tl.constexpr, KRON: tl.constexpr,
                         HAS_INV: tl.constexpr, QUANT: tl.constexpr, CODES: tl.constexpr):
    # CODES: write the int8 codes and the token's scale to sc_ptr (M,) instead of codes x scale.
    row = tl.program_id(0)
    step = R * N1
    scale = 1.0
    if QUANT:  # first pass: the token's absmax after rotation
        amax = 0.0
        for k0 in range(0, K, step):
            t, offs, mask = _rotated_tile(x_ptr, s_ptr, inv_ptr, h1_ptr, h2_ptr, row, k0, K,
                                          norm, R, N1, KRON, HAS_INV)
            amax = tl.maximum(amax, tl.max(tl.max(tl.abs(t), 1), 0))
        scale = tl.maximum(amax * clip, 1e-8) / qmax
        if CODES:
            tl.store(sc_ptr + row, scale)
    for k0 in range(0, K, step):
        t, offs, mask = _rotated_tile(x_ptr, s_ptr, inv_ptr, h1_ptr, h2_ptr, row, k0, K,
                                      norm, R, N1, KRON, HAS_INV)
        if QUANT:  # per-token symmetric grid, as fake_quant_tokens
            t = tl.minimum(tl.maximum(_round_half_even(t / scale), -qmax - 1.0), qmax)
            if not CODES:
                t = t * scale
        tl.store(out_ptr + row * K + offs, t.to(out_ptr.dtype.element_ty), mask=mask)


def rotate_quant_tokens(x: torch.Tensor, signs: torch.Tensor, block: int,
                        inv_scale: Optional[torch.Tensor] = None, bits: int = 16,
                        clip: float = 1.0, codes: bool = False):
    """Return Q_a(R x * inv_scale) (..., K) in x's dtype: rotation, scale, per-token rounding.

    x (..., K) float32 / float16 / bfloat16; signs (K,) the rotation's +-1 signs (any dtype,
    e.g. ``Rotation.signs()``'s int8); block the order n of its Sylvester blocks
    (``supports``; n divides K); inv_scale (K,) or None; bits 4 or 8 round each token on its
    own grid, 16 leaves the rotated values as they are. ``codes`` (bits 4 or 8) returns the
    tuple (int8 codes (..., K), float32 scales (...,)) instead, for the int8 tensor-core GEMM.
    """
    k = x.shape[-1]
    if not supports(block) or k % block:
        raise ValueError(f'the fused rotation takes Sylvester blocks of order 16..{MAX_BLOCK} '
                         f'dividing K, got {block} for K = {k}')
    if codes and bits >= 16:
        raise ValueError(f'int8 codes need bits 4 or 8, got {bits}')
    rows, n2, n1 = factors(block)
    x2 = x.reshape(-1, k).contiguous()                                       # (M, K)
    out = torch.empty(x2.shape, dtype=torch.int8 if codes else x.dtype, device=x.device)
    scales = torch.empty(x2.shape[0], dtype=torch.float32, device=x.device)  # (M,)
    dev = str(x.device)
    h1 = _sylvester(n1, dev)
    h2 = _left(rows, n2, dev) if n2 > 1 else h1
    inv = inv_scale.contiguous() if inv_scale is not None else signs  # unread when None
    if x2.shape[0]:
        _rotate_quant_kernel[(x2.shape[0],)](
            x2, out, signs.contiguous(), inv, h1, h2, scales, k, math.sqrt(block), clip,
            float(2 ** (bits - 1) - 1), R=rows, N1=n1, KRON=n2 > 1,
            HAS_INV=inv_scale is not None, QUANT=bits < 16, CODES=codes,
            num_warps=num_warps(rows, n1))
    if codes:
        return out.reshape(x.shape), scales.reshape(x.shape[:-1])
    return out.reshape(x.shape)
