# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The mixed-bit packed layout of one linear layer, and its plain-torch reference.

Layout (all rows of a layer, ``out_features`` N, ``in_features`` K):

* Rows are permuted into contiguous bit groups in the order 16, 8, 4, 3, 2. 0-bit (pruned)
  rows are dropped: they occupy no bytes and their output is the bias (0 without bias).
* ``counts``   int32 (5,): rows per group, in that order.
* ``perm``     int32 (R,): original output index of each kept row, in packed order
  (R = N - pruned). The kernels write packed row i to output column ``perm[i]`` in their
  epilogue, which undoes the permutation. Absorbing it into the next layer's input columns is
  legal only for MLP gate/up -> down; not across RoPE q/k pairs or residual outputs (o/down).
* ``weight16`` (n16, K) in the dense dtype for 16-bit rows.
* ``qweight``  int32 flat: the 8-, 4-, 3- and 2-bit groups one after another, each
  (n_b, ceil(K / (32 // b))) row-major, packed as in :mod:`qvla_ros.kernels.packing`.
* ``scales``, ``zeros`` fp16 (n8 + n4 + n3 + n2, G): one per row and input group of
  ``group_size`` columns (G = 1 for per-row). w_hat = (q - zero) * scale.
* ``bias``     (N,) in the dense dtype, optional.
"""

from dataclasses import dataclass
import functools
from typing import Dict, List, Optional, Tuple

import torch

from qvla_ros.core.primitives import quantize_rows
from qvla_ros.core.spec import check_bits, QuantSpec
from qvla_ros.kernels.packing import pack_rows, unpack_rows, words_per_row

GROUP_BITS = (16, 8, 4, 3, 2)
STATE_KEYS = ('counts', 'perm', 'weight16', 'qweight', 'scales', 'zeros')
# The scalars every Triton kernel takes after its tensors, in this order (``kernel_sizes``):
# rows per group, int32 words per row of each quantized group, then per quantized group its
# first packed row (r), first quantized row (q: scales and zeros) and first word (w).
KERNEL_SIZES = ('n16', 'n8', 'n4', 'n3', 'n2', 'wpr8', 'wpr4', 'wpr3', 'wpr2',
                'r8', 'q8', 'w8', 'r4', 'q4', 'w4', 'r3', 'q3', 'w3', 'r2', 'q2', 'w2')


def row_bytes(bits: int, in_features: int, group_size: Optional[int] = None) -> int:
    """Return the bytes one row of ``bits`` costs in this layout (the allocator's unit).

    16-bit: the dense fp16 row; quantized: its packed int32 words plus an fp16 scale and zero
    per group; every kept row also has its int32 index in ``perm``; a pruned row costs
    nothing. A layer adds its ``counts`` (20 bytes) and its bias.
    """
    if bits == 0:
        return 0
    if bits == 16:
        return 2 * in_features + 4
    groups = in_features // (group_size or in_features)
    return 4 * words_per_row(in_features, bits) + 4 * groups + 4


def layer_bytes(bits: torch.Tensor, in_features: int, group_size: Optional[int] = None) -> int:
    """Return the bytes of a packed layer whose rows have widths ``bits`` (N,), bias excluded.

    The rows' ``row_bytes`` plus the int32 ``counts`` of the five groups.
    """
    widths, rows = torch.unique(bits.to(torch.int64), return_counts=True)
    return 4 * len(GROUP_BITS) + sum(int(n) * row_bytes(int(b), in_features, group_size)
                                     for b, n in zip(widths, rows))


@dataclass(frozen=True)
class Group:
    """Where one bit group lives: packed-row range, quantized-row range and word offset."""

    bits: int
    row_start: int      # into perm (packed row space)
    rows: int
    qrow_start: int     # into scales/zeros (quantized rows only)
    word_start: int     # into qweight
    words_per_row: int


@dataclass
class PackedLayout:
    """Tensors of one packed mixed-bit linear layer (see the module docstring)."""

    in_features: int
    out_features: int
    group_size: int
    counts: torch.Tensor
    perm: torch.Tensor
    weight16: torch.Tensor
    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    bias: Optional[torch.Tensor] = None
    host_counts: Tuple[int, ...] = ()  # counts as Python ints: no device sync per call

    def __post_init__(self):
        if not self.host_counts:
            self.host_counts = tuple(int(c) for c in self.counts.cpu().tolist())

    @classmethod
    def from_float(cls, weight: torch.Tensor, bits_per_row, spec: QuantSpec = QuantSpec(),
                   bias: Optional[torch.Tensor] = None,
                   dense_dtype: torch.dtype = torch.float16,
                   qparams: Optional[tuple] = None) -> 'PackedLayout':
        """Quantize ``weight`` (N, K) row by row and pack it; ``bits_per_row`` (N,).

        ``qparams`` = (scale, zero), each (N, G), fixes every row's grid at its own bits (set
        by GPTQ or AWQ); by default each row's grid comes from its range and ``spec``.
        """
        n, k = weight.shape
        bits = torch.as_tensor(bits_per_row).reshape(-1).cpu()
        if bits.numel() != n:
            raise ValueError(f'bits_per_row has {bits.numel()} entries, expected {n} '
                             '(one per output row)')
        for b in torch.unique(bits).tolist():
            check_bits(b)
        gs = spec.group_size or k
        w = weight.detach().float()  # stays on its device: packing a 7B model runs on GPU
        dev = w.device
        perm, counts, qwords, scales, zeros = [], [], [], [], []
        weight16 = w[(bits == 16).to(dev)].to(dense_dtype)
        for b in GROUP_BITS:
            rows = (bits == b).nonzero().squeeze(1)
            perm.append(rows)
            counts.append(rows.numel())
            if b == 16 or rows.numel() == 0:
                continue
            sel = rows.to(dev)
            grid = None if qparams is None else (qparams[0][sel], qparams[1][sel])
            qr = quantize_rows(w[sel], b, spec, qparams=grid)
            qwords.append(pack_rows(qr.codes, b).reshape(-1))
            scales.append(qr.scale)
            zeros.append(qr.zero)
        ngroups = k // gs
        return cls(
            in_features=k, out_features=n, group_size=gs,
            counts=torch.tensor(counts, dtype=torch.int32, device=dev),
            perm=torch.cat(perm).to(device=dev, dtype=torch.int32),
            weight16=weight16,
            qweight=(torch.cat(qwords) if qwords
                     else torch.zeros(0, dtype=torch.int32, device=dev)),
            scales=(torch.cat(scales) if scales else torch.zeros(0, ngroups, device=dev)).half(),
            zeros=(torch.cat(zeros) if zeros else torch.zeros(0, ngroups, device=dev)).half(),
            bias=None if bias is None else bias.detach().to(device=dev, dtype=dense_dtype))

    @functools.cached_property
    def _groups(self) -> tuple:
        return tuple(self._compute_groups())

    def groups(self) -> List[Group]:
        """Return the non-empty bit groups with their offsets, in packed order."""
        return list(self._groups)

    @functools.cached_property
    def kernel_sizes(self) -> tuple:
        """Return the group sizes and offsets the Triton kernels take, named by KERNEL_SIZES."""
        quant = [g for g in self._all_groups() if g.bits != 16]
        return (*self.host_counts, *(g.words_per_row for g in quant),
                *(v for g in quant for v in (g.row_start, g.qrow_start, g.word_start)))

    @functools.cached_property
    def cpu_gemv_args(self) -> tuple:
        """Return the arguments after x of the CPU extension's ``mixed_gemv``, built once.

        (counts, perm, weight16, qweight, scales, zeros, bias or None, out_features,
        group_size): the layout's own CPU tensors, so in-place updates stay visible.
        """
        return (self.counts, self.perm, self.weight16, self.qweight, self.scales,
                self.zeros, self.bias, self.out_features, self.group_size)

    def output_buffer(self, m: int, dtype: torch.dtype, device) -> torch.Tensor:
        """Return an (m, N) output for kernels that write only the kept columns.

        Uninitialised when no row is pruned; otherwise pre-filled with what a pruned column
        outputs: the bias, or 0. Always new memory, never a view of the bias.
        """
        n = self.out_features
        if sum(self.host_counts) == n:
            return torch.empty(m, n, dtype=dtype, device=device)
        if self.bias is None:
            return torch.zeros(m, n, dtype=dtype, device=device)
        return self.bias.to(device=device, dtype=dtype).expand(m, n).clone()

    def _compute_groups(self) -> List[Group]:
        return [g for g in self._all_groups() if g.rows]

    def _all_groups(self) -> List[Group]:
        """Return all five groups in packed order, empty ones included (the one offset sum)."""
        out, row, qrow, word = [], 0, 0, 0
        for b, n in zip(GROUP_BITS, self.host_counts):
            wpr = 0 if b == 16 else words_per_row(self.in_features, b)
            out.append(Group(b, row, n, qrow, word, wpr))
            row += n
            if b != 16:
                qrow += n
                word += n * wpr
        return out

    def group_codes(self, group: Group) -> torch.Tensor:
        """Return the uint8 codes (rows, K) of a quantized group (reference unpacking)."""
        words = self.qweight[group.word_start:group.word_start
                             + group.rows * group.words_per_row]
        return unpack_rows(words.view(group.rows, group.words_per_row), group.bits,
                           self.in_features)

    def dequantize(self) -> torch.Tensor:
        """Return the float32 (N, K) weight the packed layer represents (pruned rows = 0)."""
        w = torch.zeros(self.out_features, self.in_features, device=self.perm.device)
        for g in self.groups():
            rows = self.perm[g.row_start:g.row_start + g.rows].long()
            if g.bits == 16:
                w[rows] = self.weight16.float()
                continue
            q = self.group_codes(g).float().view(g.rows, -1, self.group_size)
            s = self.scales[g.qrow_start:g.qrow_start + g.rows].float().unsqueeze(-1)
            z = self.zeros[g.qrow_start:g.qrow_start + g.rows].float().unsqueeze(-1)
            w[rows] = ((q - z) * s).view(g.rows, self.in_features)
        return w

    def bits_per_row(self) -> torch.Tensor:
        """Return uint8 (N,) bits of each original row (0 = pruned)."""
        bits = torch.zeros(self.out_features, dtype=torch.uint8)
        for g in self.groups():
            bits[self.perm[g.row_start:g.row_start + g.rows].long().cpu()] = g.bits
        return bits

    def tensors(self) -> Dict[str, torch.Tensor]:
        """Return every tensor the layer holds, by state key."""
        out = {key: getattr(self, key) for key in STATE_KEYS}
        if self.bias is not None:
            out['bias'] = self.bias
        return out

    def packed_bytes(self) -> int:
        """Return every byte the layer holds: weights, scales, zeros, indices and bias."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def to(self, device) -> 'PackedLayout':
        """Return a copy with every tensor on ``device``."""
        moved = {k: v.to(device) for k, v in self.tensors().items()}
        return PackedLayout(self.in_features, self.out_features, self.group_size,
                            bias=moved.pop('bias', None), host_counts=self.host_counts,
                            **moved)

    @classmethod
    def from_tensors(cls, tensors: Dict[str, torch.Tensor], in_features: int,
                     out_features: int, group_size: int) -> 'PackedLayout':
        """Rebuild a layout from :meth:`tensors`, validating every shape and dtype."""
        missing = [k for k in STATE_KEYS if k not in tensors]
        if missing:
            raise ValueError(f'packed layer state is missing {missing}; expected keys '
                             f'{list(STATE_KEYS)} (+ optional bias)')
        layout = cls(in_features, out_features, group_size, counts=tensors['counts'],
                     perm=tensors['perm'], weight16=tensors['weight16'],
                     qweight=tensors['qweight'], scales=tensors['scales'],
                     zeros=tensors['zeros'], bias=tensors.get('bias'))
        layout.validate()
        return layout

    def validate(self) -> None:
        """Raise ValueError naming the first field that is inconsistent."""
        def need(ok, what):
            if not ok:
                raise ValueError(f'invalid packed layer ({self.out_features}x'
                                 f'{self.in_features}): {what}')
        k, gs = self.in_features, self.group_size
        need(gs > 0 and k % gs == 0, f'group_size {gs} must divide in_features {k}')
        need(self.counts.shape == (5,) and self.counts.dtype == torch.int32,
             'counts must be int32 (5,) for bit groups (16, 8, 4, 3, 2)')
        kept = int(self.counts.sum())
        need(kept <= self.out_features, f'counts sum {kept} exceeds out_features')
        need(self.perm.shape == (kept,) and self.perm.dtype == torch.int32,
             f'perm must be int32 ({kept},)')
        need(kept == 0 or (int(self.perm.min()) >= 0 and int(self.perm.max())
                           < self.out_features and self.perm.unique().numel() == kept),
             'perm must hold distinct row indices in [0, out_features)')
        n16 = int(self.counts[0])
        need(tuple(self.weight16.shape) == (n16, k), f'weight16 must be ({n16}, {k})')
        nq = kept - n16
        need(tuple(self.scales.shape) == (nq, k // gs) and self.scales.dtype == torch.float16,
             f'scales must be float16 ({nq}, {k // gs})')
        need(self.zeros.shape == self.scales.shape and self.zeros.dtype == torch.float16,
             'zeros must match scales')
        words = sum(g.rows * g.words_per_row for g in self.groups() if g.bits != 16)
        need(self.qweight.shape == (words,) and self.qweight.dtype == torch.int32,
             f'qweight must be int32 ({words},)')
        need(self.bias is None or tuple(self.bias.shape) == (self.out_features,),
             f'bias must be ({self.out_features},)')


def reference_linear(x: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
    """Plain-torch oracle: x (..., K) @ dequantize().T + bias, computed in float32."""
    w = layout.dequantize().to(x.device)
    y = x.float() @ w.t()
    if layout.bias is not None:
        y = y + layout.bias.float().to(x.device)
    return y.to(x.dtype)
