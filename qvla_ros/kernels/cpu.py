# Copyright 2026 qvla_ros authors. Apache-2.0.
"""CPU path for the packed layout: decode each bit group on the fly, in row chunks.

Nothing dense is cached. Each call walks the bit groups in chunks of about
``CHUNK_ELEMENTS`` weights: the chunk's int32 words are split into codes with SWAR masks (one
mask per code position of a byte, so 2-, 4- and 8-bit need no per-code shifts), dequantized
in float32 as (q - zero) * scale, cast to the compute dtype (``gemm_dtype``: bf16 where the
CPU multiplies bf16 natively, else float32), and multiplied. Chunking keeps the transient
weight small enough to stay in cache and avoids page-faulting a fresh large buffer on every
call. 3-bit codes straddle bytes and go through plain int32 shifts.
"""

import functools
from typing import Optional

import torch
import torch.nn.functional as F

from qvla_ros.kernels import cpu_ext
from qvla_ros.kernels.format import Group, PackedLayout
from qvla_ros.kernels.packing import unpack_rows

CHUNK_ELEMENTS = 1 << 20  # transient weight per step: 2 MiB in bf16, cache-sized
_BYTE_MASK = {2: 0x03030303, 4: 0x0F0F0F0F}  # 8-bit codes are the bytes themselves


def decode_codes(words: torch.Tensor, bits: int, in_features: int) -> torch.Tensor:
    """Return uint8 codes (rows, in_features) from int32 words (rows, W)."""
    rows = words.shape[0]
    if bits == 3:
        return unpack_rows(words, bits, in_features)
    if bits == 8:
        codes = words.view(torch.uint8).view(rows, -1)  # little-endian: byte j = code j
    else:
        mask = _BYTE_MASK[bits]
        # Plane p holds, in byte j of each word, the code at position p of that byte.
        planes = [((words >> (bits * p)) & mask).view(torch.uint8)
                  for p in range(8 // bits)]
        codes = torch.stack(planes, dim=-1).view(rows, -1)  # (rows, 4W * 8/bits)
    return codes[:, :in_features]


def dequantize_rows_of(layout: PackedLayout, g: Group, start: int, stop: int,
                       dtype: torch.dtype) -> torch.Tensor:
    """Return rows [start, stop) of group ``g`` as a transient (stop-start, K) weight."""
    if g.bits == 16:
        return layout.weight16[start:stop].to(dtype)
    n = stop - start
    w0 = g.word_start + start * g.words_per_row
    words = layout.qweight[w0:w0 + n * g.words_per_row].view(n, g.words_per_row)
    q = decode_codes(words, g.bits, layout.in_features).to(torch.float32)
    q = q.view(n, -1, layout.group_size)  # (n, G, gs)
    rows = slice(g.qrow_start + start, g.qrow_start + stop)
    s = layout.scales[rows].float().unsqueeze(-1)  # (n, G, 1)
    z = layout.zeros[rows].float().unsqueeze(-1)
    return torch.addcmul(-z * s, q, s).view(n, layout.in_features).to(dtype)


def cpu_flags() -> frozenset:
    """Return the CPU feature flags Linux reports (empty elsewhere)."""
    try:
        with open('/proc/cpuinfo') as f:
            return frozenset(next((line.split(':', 1)[1].split() for line in f
                                   if line.startswith('flags')), []))
    except OSError:
        return frozenset()


@functools.lru_cache(maxsize=1)
def gemm_dtype() -> torch.dtype:
    """Return the GEMM dtype of the CPU path: bf16 with native bf16 units, else float32.

    Without AVX512-BF16 or AMX (AMD Zen 2/3, most ARM cores) torch emulates bf16 GEMMs at a
    fraction of float32's speed; float32 is then both faster and exact.
    """
    native = {'avx512_bf16', 'amx_bf16'} & cpu_flags()
    return torch.bfloat16 if native else torch.float32


SMALL_M = 16  # at or below this many tokens the fused extension GEMV wins (bench/kernels.py)


def cpu_linear(x: torch.Tensor, layout: PackedLayout,
               compute_dtype: Optional[torch.dtype] = None,
               chunk_elements: int = CHUNK_ELEMENTS, use_ext: bool = True) -> torch.Tensor:
    """Return x (..., K) through the packed layer, computing in ``compute_dtype``.

    With the compiled extension (``cpu_ext``): M <= SMALL_M runs one fused decode-and-dot
    pass in float32; larger M decodes the layer (small layers whole, in output order; large
    ones chunk by chunk) to ``compute_dtype`` (default ``gemm_dtype()``; float32 gives results
    within 1e-5 of the reference) in C++ and runs one GEMM per piece.
    Without it, or for other compute dtypes, the pure-torch decode below is used.
    """
    compute_dtype = compute_dtype or gemm_dtype()
    lead = x.shape[:-1]
    x2 = x.reshape(-1, layout.in_features)
    ext = _extension() if use_ext else None
    if ext is not None and x2.shape[0] <= SMALL_M:
        # The per-call cost at M=1 is mostly overhead: hand over cached arguments only.
        y = ext.mixed_gemv(x2.float().contiguous(), *layout.cpu_gemv_args)
        return y if x.dim() == 2 and x.dtype == torch.float32 else (
            y.to(x.dtype).reshape(*lead, layout.out_features))
    x2 = x2.to(compute_dtype)  # (M, K)
    fast = ext is not None and compute_dtype in (torch.bfloat16, torch.float32)
    fp32 = compute_dtype == torch.float32
    if fast and ext is not None and layout.out_features * layout.in_features <= chunk_elements:
        # Small layer: decode it whole, in output order (pruned rows zero), then one GEMM.
        w = ext.dequant_dense(layout.counts, layout.perm, layout.weight16, layout.qweight,
                              layout.scales, layout.zeros, layout.out_features,
                              layout.in_features, layout.group_size, fp32)
        return _finish(F.linear(x2, w), x, layout, lead)
    y = x2.new_zeros(x2.shape[0], layout.out_features)  # pruned columns stay 0 (+ bias)
    chunk_rows = max(16, chunk_elements // layout.in_features)
    for g in layout.groups():
        for start in range(0, g.rows, chunk_rows):
            stop = min(start + chunk_rows, g.rows)
            if fast and ext is not None and g.bits != 16:
                w0 = g.word_start + start * g.words_per_row
                words = layout.qweight[w0:w0 + (stop - start) * g.words_per_row]
                rows = slice(g.qrow_start + start, g.qrow_start + stop)
                w = ext.dequant_rows(words.view(stop - start, g.words_per_row), g.bits,
                                     layout.scales[rows], layout.zeros[rows],
                                     layout.in_features, layout.group_size, fp32)
            else:
                w = dequantize_rows_of(layout, g, start, stop, compute_dtype)
            cols = layout.perm[g.row_start + start:g.row_start + stop].long()
            y.index_copy_(1, cols, F.linear(x2, w))
    return _finish(y, x, layout, lead)


def _finish(y: torch.Tensor, x: torch.Tensor, layout: PackedLayout, lead) -> torch.Tensor:
    y = y.to(x.dtype)  # y is always this call's own output, so in place is safe
    if layout.bias is not None:  # added in the output dtype: a pruned column is its bias
        y.add_(layout.bias.to(x.dtype))
    return y.reshape(*lead, layout.out_features)


def _extension():
    return cpu_ext.load()
