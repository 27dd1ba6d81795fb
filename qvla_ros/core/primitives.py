# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Per-row uniform quantization math: pure functions, no in-place mutation of inputs.

A row w (K,) at b bits, split into groups of ``group_size`` columns (one group if None), is
stored as integer codes q in [0, 2^b - 1] with a scale s and zero-point z per group, and read
back as w_hat = (q - z) * s. Asymmetric: s = (max - min) / (2^b - 1), z = round(-min / s).
Symmetric: s = absmax / (2^(b-1) - 1), z = 2^(b-1) (codes centred; -2^(b-1) is reachable).
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from qvla_ros.core.spec import check_bits, QUANT_BITS, QuantSpec, Scheme

_EPS = 1e-8


@dataclass(frozen=True)
class QuantizedRows:
    """Codes (N, K) uint8, scale (N, G) float32 and zero (N, G) float32 of N rows."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int


def _grouped(w: torch.Tensor, group_size: int) -> torch.Tensor:
    n, k = w.shape
    if k % group_size:
        raise ValueError(f'in_features {k} is not a multiple of group_size {group_size}')
    return w.reshape(n, k // group_size, group_size)  # (N, G, gs)


def _qparams(lo: torch.Tensor, hi: torch.Tensor, bits: int,
             scheme: Scheme) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return (scale, zero) for ranges [lo, hi]; both shaped like lo."""
    if scheme is Scheme.SYMMETRIC:
        half = 2 ** (bits - 1)
        scale = torch.maximum(lo.abs(), hi.abs()).clamp(min=_EPS) / max(half - 1, 1)
        return scale, torch.full_like(scale, float(half))
    lo = torch.minimum(lo, torch.zeros_like(lo))
    hi = torch.maximum(hi, torch.zeros_like(hi))
    scale = (hi - lo).clamp(min=_EPS) / (2 ** bits - 1)
    zero = torch.round(-lo / scale).clamp(0, 2 ** bits - 1)
    return scale, zero


def _encode(wg: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
            bits: int) -> torch.Tensor:
    """Return codes (N, G, gs), float in [0, 2^b - 1], of wg (N, G, gs) given (N, G) qparams."""
    q = torch.round(wg / scale.unsqueeze(-1)) + zero.unsqueeze(-1)
    return q.clamp(0, 2 ** bits - 1)


def _check_quant_bits(bits: int) -> int:
    bits = check_bits(bits)
    if bits not in QUANT_BITS:
        raise ValueError(f'quantize_rows takes bits in {QUANT_BITS}; 0 (prune) and 16 '
                         f'(keep) are handled by fake_quant_rows, got {bits}')
    return bits


def row_qparams(w: torch.Tensor, bits: int, spec: QuantSpec = QuantSpec(),
                clip_ratio: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return (scale, zero), each (N, G), for rows of ``w`` (N, K).

    ``clip_ratio`` (N,) shrinks each row's range before the grid is chosen (AWQ-style
    clipping searched by the caller); otherwise ``spec.clip_search`` may search one by MSE.
    """
    bits = _check_quant_bits(bits)
    if w.ndim != 2:
        raise ValueError(f'expected a 2-D weight (out, in), got shape {tuple(w.shape)}')
    wg = _grouped(w.detach().float(), spec.group_size or w.shape[1])  # (N, G, gs)
    lo, hi = wg.amin(-1), wg.amax(-1)  # (N, G)
    if clip_ratio is not None:
        r = clip_ratio.to(lo).reshape(-1, 1)
        return _qparams(lo * r, hi * r, bits, spec.scheme)
    scale, zero = _qparams(lo, hi, bits, spec.scheme)
    if spec.clip_search:
        scale, zero = _clip_search(wg, lo, hi, bits, spec, scale, zero)
    return scale, zero


def quantize_rows(w: torch.Tensor, bits: int, spec: QuantSpec = QuantSpec(),
                  qparams: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> QuantizedRows:
    """Quantize every row of ``w`` (N, K) to ``bits`` in {2, 3, 4, 8}.

    ``qparams`` = (scale, zero) (N, G) fixes the grid (GPTQ and AWQ choose their own);
    by default it is derived from each row's range.
    """
    bits = _check_quant_bits(bits)
    scale, zero = qparams if qparams is not None else row_qparams(w, bits, spec)
    gs = spec.group_size or w.shape[1]
    wg = _grouped(w.detach().float(), gs)  # (N, G, gs)
    if scale.shape != wg.shape[:2] or zero.shape != wg.shape[:2]:
        raise ValueError(f'qparams must be ({wg.shape[0]}, {wg.shape[1]}), got '
                         f'{tuple(scale.shape)} and {tuple(zero.shape)}')
    scale, zero = scale.float(), zero.float()
    codes = _encode(wg, scale, zero, bits)
    return QuantizedRows(codes.reshape(w.shape).to(torch.uint8), scale, zero, bits, gs)


def _clip_search(wg, lo, hi, bits, spec, best_scale, best_zero):
    """Shrink each group's range by ratios in [clip_min_ratio, 1] and keep the lowest MSE."""
    best_err = _group_err(wg, best_scale, best_zero, bits)
    ratios = torch.linspace(1.0, spec.clip_min_ratio, spec.clip_grid + 1)[1:]
    for r in ratios.tolist():
        scale, zero = _qparams(lo * r, hi * r, bits, spec.scheme)
        err = _group_err(wg, scale, zero, bits)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zero = torch.where(better, zero, best_zero)
    return best_scale, best_zero


def _group_err(wg, scale, zero, bits):
    deq = (_encode(wg, scale, zero, bits) - zero.unsqueeze(-1)) * scale.unsqueeze(-1)
    return (deq - wg).pow(2).sum(-1)  # (N, G)


def dequantize_rows(qr: QuantizedRows) -> torch.Tensor:
    """Return float32 (N, K) rows w_hat = (q - z) * s."""
    n, k = qr.codes.shape
    q = qr.codes.float().reshape(n, k // qr.group_size, qr.group_size)
    return ((q - qr.zero.unsqueeze(-1)) * qr.scale.unsqueeze(-1)).reshape(n, k)


def fake_quant_rows(w: torch.Tensor, bits_per_row: torch.Tensor,
                    spec: QuantSpec = QuantSpec(),
                    qparams: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
    """Return ``w`` (N, K) with row c quantized-dequantized at ``bits_per_row[c]``.

    16 keeps the row, 0 zeroes it (the layer output is then its bias). Output dtype = w's.
    ``qparams`` (N, G) fixes the grid of every row, as in :func:`quantize_rows`.
    """
    bits_per_row = torch.as_tensor(bits_per_row).reshape(-1)
    if bits_per_row.numel() != w.shape[0]:
        raise ValueError(f'bits_per_row has {bits_per_row.numel()} entries, expected one per '
                         f'output row ({w.shape[0]})')
    out = w.detach().clone()
    for b in torch.unique(bits_per_row).tolist():
        b = check_bits(b)
        rows = (bits_per_row == b).nonzero().squeeze(1)
        if b == 16:
            continue
        if b == 0:
            out[rows] = 0
            continue
        grid = None if qparams is None else (qparams[0][rows], qparams[1][rows])
        out[rows] = dequantize_rows(quantize_rows(w[rows], b, spec, grid)).to(w.dtype)
    return out


def token_codes(x: torch.Tensor, bits: int,
                clip_ratio: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return per-token symmetric codes (..., K) and scales (..., 1) of x (..., K), in x's dtype.

    Each token (last dim) gets its own grid spanning ``clip_ratio`` x its absmax:
    s = clip absmax / (2^(b-1) - 1), q = clamp(round(x / s), -2^(b-1), 2^(b-1) - 1), read back
    as q s. Codes of b <= 8 are integers of at most 8 bits: exact in fp16 and bf16, and what
    the int8 tensor-core kernels take.
    """
    qmax = 2 ** (bits - 1) - 1
    scale = (x.detach().abs().amax(-1, keepdim=True) * clip_ratio).clamp(min=_EPS) / qmax
    return torch.round(x.detach() / scale).clamp(-qmax - 1, qmax), scale
