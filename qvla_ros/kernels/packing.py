# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Bit packing of integer codes into int32 words along the input dimension.

A row of K codes at b bits is stored in ceil(K / (32 // b)) int32 words. Value j of a word sits
in bits [j*b, (j+1)*b): 2-bit packs 16 per word, 3-bit 10 (2 high bits unused), 4-bit 8 and
8-bit 4. Column k of a row lives in word k // (32 // b) at shift (k % (32 // b)) * b. The tail
of the last word is zero.
"""

import torch

PACK_BITS = (2, 3, 4, 8)


def values_per_word(bits: int) -> int:
    """Return how many ``bits``-wide values one int32 word holds."""
    if bits not in PACK_BITS:
        raise ValueError(f'cannot pack {bits}-bit values; expected one of {PACK_BITS}')
    return 32 // bits


def words_per_row(in_features: int, bits: int) -> int:
    """Return the number of int32 words of one packed row."""
    vpw = values_per_word(bits)
    return -(-in_features // vpw)


def pack_rows(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack uint8 codes (N, K) in [0, 2^bits) into int32 words (N, ceil(K / vpw))."""
    if codes.ndim != 2:
        raise ValueError(f'expected codes of shape (N, K), got {tuple(codes.shape)}')
    if codes.numel() and int(codes.max()) >= 2 ** bits:
        raise ValueError(f'code {int(codes.max())} does not fit in {bits} bits')
    n, k = codes.shape
    vpw = values_per_word(bits)
    nwords = words_per_row(k, bits)
    padded = torch.zeros(n, nwords * vpw, dtype=torch.int64, device=codes.device)
    padded[:, :k] = codes.to(torch.int64)
    shifts = torch.arange(vpw, dtype=torch.int64, device=codes.device) * bits  # (vpw,)
    words = (padded.view(n, nwords, vpw) << shifts).sum(-1)  # (N, W) in [0, 2^32)
    return (words - ((words >= 2 ** 31).long() << 32)).to(torch.int32)


def unpack_rows(words: torch.Tensor, bits: int, in_features: int) -> torch.Tensor:
    """Inverse of :func:`pack_rows`: int32 (N, W) -> uint8 codes (N, in_features)."""
    vpw = values_per_word(bits)
    shifts = torch.arange(vpw, dtype=torch.int32, device=words.device) * bits
    vals = (words.unsqueeze(-1) >> shifts) & (2 ** bits - 1)  # (N, W, vpw)
    return vals.reshape(words.shape[0], -1)[:, :in_features].to(torch.uint8)
