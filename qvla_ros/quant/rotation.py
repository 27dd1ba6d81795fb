# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Randomized Hadamard rotations of a layer's input (QuaRot-style), in plain torch.

y = W x = (W R^T)(R x) for any orthogonal R, so a layer may run on rotated inputs with its
weight columns rotated offline. A Hadamard R spreads an outlier channel over every channel of
its block, which leaves per-token 4-bit grids (and per-row weight grids) far less range to
cover. R = blockdiag(H_n, ..., H_n) diag(d) / sqrt(n): random signs d (K,), then Hadamard
blocks of order n = m 2^a, the largest such order dividing K, with H_n = H_m (Paley) (x)
H_2^(x a) (Sylvester), applied as a small matmul and a fast Walsh-Hadamard transform:
O(K (m + a)) per token instead of O(K^2).
"""

from functools import lru_cache
from typing import Optional, Tuple

import torch
from torch import nn

MAX_PALEY = 256  # largest Paley order searched; the Paley factor is a dense (m, m) matmul


def _is_prime(q: int) -> bool:
    return q > 1 and all(q % p for p in range(2, int(q ** 0.5) + 1))


def _is_paley_order(m: int) -> bool:
    """Return True if Paley's first construction gives a Hadamard matrix of order m."""
    return m % 4 == 0 and _is_prime(m - 1) and (m - 1) % 4 == 3


@lru_cache(maxsize=None)
def paley_matrix(m: int) -> torch.Tensor:
    """Return a Hadamard matrix of order m = q + 1 (q prime, q = 3 mod 4), entries +-1 (m, m).

    Paley I: H = I + S with S = [[0, 1^T], [-1, Q]], Q_ij = chi(j - i) the quadratic
    character mod q; H H^T = m I.
    """
    if not _is_paley_order(m):
        raise ValueError(f'Paley I gives no Hadamard matrix of order {m}; expected q + 1 with q '
                         'a prime = 3 mod 4')
    q = m - 1
    squares = {(i * i) % q for i in range(1, q)}
    chi = torch.tensor([0.0] + [1.0 if r in squares else -1.0 for r in range(1, q)])
    idx = (torch.arange(q)[None, :] - torch.arange(q)[:, None]) % q  # (q, q): j - i
    s = torch.zeros(m, m)
    s[0, 1:], s[1:, 0], s[1:, 1:] = 1.0, -1.0, chi[idx]
    return s + torch.eye(m)


def block_factors(k: int) -> Tuple[int, int]:
    """Return (m, a): the largest Hadamard order n = m 2^a dividing k, m = 1 or a Paley order.

    Among equal orders the smallest m wins (the Paley factor costs m per entry, a level 1).

    (1, 0) when k is odd (the rotation is then the random signs alone).
    """
    best = (1, 0)
    for a in range(k.bit_length()):
        if k % (1 << a):
            break
        rest = k >> a
        for m in [1] + [d for d in range(4, min(rest, MAX_PALEY) + 1, 4)
                        if rest % d == 0 and _is_paley_order(d)]:
            if (m << a, -m) > (best[0] << best[1], -best[0]):  # larger n, then cheaper m
                best = (m, a)
    return best


def _fwht(x: torch.Tensor) -> torch.Tensor:
    """Return H_2^(x a) x over the last dim (size 2^a), unnormalized (Sylvester order)."""
    lead, n = x.shape[:-1], x.shape[-1]
    h = 1
    while h < n:  # one butterfly level per bit: pairs (i, i + h) -> (sum, difference)
        y = x.reshape(*lead, n // (2 * h), 2, h)
        x = torch.stack((y[..., 0, :] + y[..., 1, :], y[..., 0, :] - y[..., 1, :]), -2)
        x = x.reshape(*lead, n)
        h *= 2
    return x


def pack_signs(bits: torch.Tensor) -> torch.Tensor:
    """Return (ceil(K / 8),) uint8 holding K bits (1 = +1, 0 = -1), little-endian in a byte."""
    pad = torch.zeros((-bits.numel()) % 8, dtype=torch.uint8)
    b = torch.cat([bits.to(torch.uint8), pad]).view(-1, 8)  # (ceil(K/8), 8)
    return (b << torch.arange(8, dtype=torch.uint8)).sum(1, dtype=torch.uint8)


def unpack_signs(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Return the K signs (+-1, int8) held in ``packed`` (``pack_signs``)."""
    bits = (packed[:, None] >> torch.arange(8, dtype=torch.uint8, device=packed.device)) & 1
    return bits.flatten()[:k].to(torch.int8) * 2 - 1


class Rotation(nn.Module):
    """x (..., K) -> R x: random signs, then Hadamard blocks of order m 2^a, orthonormal.

    The signs are stored with the layer as bits (``sign_bits``, ceil(K / 8) bytes: a
    checkpoint carries them); the Paley factor is rebuilt from its order.
    """

    sign_bits: torch.Tensor  # (ceil(K / 8),) uint8, a buffer
    paley: Optional[torch.Tensor]  # (m, m) +-1, a buffer rebuilt from m (None when m == 1)

    def __init__(self, k: int, seed: int = 0):
        super().__init__()
        self.k = k
        self.m, self.a = block_factors(k)
        gen = torch.Generator().manual_seed(seed)
        bits = torch.randint(0, 2, (k,), generator=gen, dtype=torch.uint8)
        self.register_buffer('sign_bits', pack_signs(bits))
        self.register_buffer('paley', paley_matrix(self.m) if self.m > 1 else None,
                             persistent=False)
        self._signs_key: Optional[tuple] = None  # (device, storage, version) of _signs
        self._signs = torch.empty(0, dtype=torch.int8)

    def signs(self) -> torch.Tensor:
        """Return the signs d (K,) as +-1 (int8), unpacked again only when ``sign_bits`` change.

        Every forward needs them; a load or ``.to()`` replaces or rewrites the buffer, which
        changes the key. Inference-mode tensors keep no version counter: never cached.
        """
        bits = self.sign_bits
        if bits.is_inference():
            return unpack_signs(bits, self.k)
        key = (bits.device, bits.data_ptr(), bits._version)
        if self._signs_key != key:
            self._signs, self._signs_key = unpack_signs(bits, self.k), key
        return self._signs

    @property
    def block(self) -> int:
        """Return the order n of the Hadamard blocks."""
        return self.m << self.a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x R^T (..., K): every row of x rotated (a token, or a weight row).

        Half-precision inputs are rotated in float32: a bf16 sum per butterfly level would
        lose bits at every one of the log2(n) levels.
        """
        n, lead, dtype = self.block, x.shape[:-1], x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        x = x * self.signs().to(x.dtype)
        x = x.reshape(*lead, self.k // n, self.m, 1 << self.a)  # (..., K/n, m, 2^a)
        x = _fwht(x)
        if self.paley is not None:
            x = torch.matmul(self.paley.to(x.dtype), x)  # H_m X: (..., K/n, m, 2^a)
        return (x.reshape(*lead, self.k) / n ** 0.5).to(dtype)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Return y R (..., K): undo :meth:`forward` (R is orthogonal, so R^-1 = R^T).

        Per block R^T = diag(d) H_n^T / sqrt(n) with H_n^T = H_m^T (x) H_2^(x a) (Sylvester
        blocks are symmetric).
        """
        n, lead, dtype = self.block, y.shape[:-1], y.dtype
        if dtype in (torch.float16, torch.bfloat16):
            y = y.float()
        y = _fwht(y.reshape(*lead, self.k // n, self.m, 1 << self.a))  # (..., K/n, m, 2^a)
        if self.paley is not None:
            y = torch.matmul(self.paley.t().to(y.dtype), y)  # H_m^T Y
        y = y.reshape(*lead, self.k) / n ** 0.5
        return (y * self.signs().to(y.dtype)).to(dtype)

    def extra_repr(self) -> str:
        """Describe the blocks."""
        return f'k={self.k}, block={self.block} (paley {self.m} x 2^{self.a})'
