# Copyright 2026 qvla_ros authors. Apache-2.0.
"""CPU path for the packed layout: unpack each bit group on the fly, one GEMM per group.

Nothing dense is cached: each call expands a group's codes into a transient weight in the
compute dtype, multiplies, and frees it. For 2-, 4- and 8-bit groups the int32 words are read
as little-endian bytes (values never straddle a byte), which keeps the unpacking to one shift
and one mask over uint8 data; 3-bit goes through int32 shifts.
"""

import torch
import torch.nn.functional as F

from qvla_ros.kernels.format import Group, PackedLayout


def _codes(layout: PackedLayout, g: Group) -> torch.Tensor:
    """Return codes (rows, K) as uint8 for group ``g``."""
    words = layout.qweight[g.word_start:g.word_start + g.rows * g.words_per_row]
    words = words.view(g.rows, g.words_per_row)
    if g.bits == 3:
        return layout.group_codes(g)
    per_byte = 8 // g.bits
    data = words.view(torch.uint8)  # (rows, 4W): little-endian bytes of each word
    if per_byte == 1:
        codes = data
    else:
        shifts = torch.arange(0, 8, g.bits, dtype=torch.uint8)  # (per_byte,)
        codes = (data.unsqueeze(-1) >> shifts) & (2 ** g.bits - 1)  # (rows, 4W, per_byte)
        codes = codes.view(g.rows, -1)
    return codes[:, :layout.in_features]


def dequantize_group(layout: PackedLayout, g: Group, dtype: torch.dtype) -> torch.Tensor:
    """Return the transient (rows, K) weight of group ``g`` in ``dtype``."""
    if g.bits == 16:
        return layout.weight16.to(dtype)
    q = _codes(layout, g).to(dtype).view(g.rows, -1, layout.group_size)  # (n, G, gs)
    s = layout.scales[g.qrow_start:g.qrow_start + g.rows].to(dtype).unsqueeze(-1)
    z = layout.zeros[g.qrow_start:g.qrow_start + g.rows].to(dtype).unsqueeze(-1)
    return torch.addcmul(-z * s, q, s).view(g.rows, layout.in_features)  # (q - z) * s


def cpu_linear(x: torch.Tensor, layout: PackedLayout,
               compute_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Return x (..., K) through the packed layer, computing in ``compute_dtype``."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, layout.in_features).to(compute_dtype)  # (M, K)
    m, n = x2.shape[0], layout.out_features
    groups = layout.groups()
    kept = sum(g.rows for g in groups)
    if kept == n and len(groups) == 1:
        y = F.linear(x2, dequantize_group(layout, groups[0], compute_dtype))
        y = y.index_select(1, torch.argsort(layout.perm.long()))
    else:
        y = x2.new_zeros(m, n)
        for g in groups:
            part = F.linear(x2, dequantize_group(layout, g, compute_dtype))  # (M, rows)
            y.index_copy_(1, layout.perm[g.row_start:g.row_start + g.rows].long(), part)
    y = y.to(x.dtype)
    if layout.bias is not None:  # added in the output dtype: a pruned column is its bias
        y = y + layout.bias.to(x.dtype)
    return y.reshape(*lead, n)
