# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The vocabulary of quantization: schemes, bit-widths and the per-row quantizer spec."""

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Optional

from qvla_ros.core.types import check_version

# Bit-widths a row may take. 16 = kept in fp16/bf16, 0 = pruned (the row is removed).
SUPPORTED_BITS = (0, 2, 3, 4, 8, 16)
QUANT_BITS = (2, 3, 4, 8)


class Scheme(str, Enum):
    """Uniform integer grid of a row: with a zero-point (asymmetric) or centred (symmetric)."""

    ASYMMETRIC = 'asymmetric'
    SYMMETRIC = 'symmetric'


@dataclass(frozen=True)
class QuantSpec:
    """How one row (or one group of a row) is quantized.

    scheme: asymmetric (scale + zero-point, default) or symmetric.
    group_size: None for one scale per row, else the number of input columns per scale.
    clip_search: search a per-row clipping ratio minimising the MSE of the row.
    """

    scheme: Scheme = Scheme.ASYMMETRIC
    group_size: Optional[int] = None
    clip_search: bool = False
    clip_grid: int = 20
    clip_min_ratio: float = 0.5
    version: int = 1

    def __post_init__(self):
        object.__setattr__(self, 'scheme', Scheme(self.scheme))
        if self.group_size is not None and (self.group_size < 1 or self.group_size % 8):
            raise ValueError(f'QuantSpec.group_size must be None or a positive multiple of 8, '
                             f'got {self.group_size}')
        if not 0.0 < self.clip_min_ratio <= 1.0:
            raise ValueError(f'QuantSpec.clip_min_ratio must be in (0, 1], got '
                             f'{self.clip_min_ratio}')
        if self.clip_grid < 1:
            raise ValueError(f'QuantSpec.clip_grid must be >= 1, got {self.clip_grid}')
        check_version('QuantSpec', self.version)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        out = asdict(self)
        out['scheme'] = self.scheme.value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> 'QuantSpec':
        """Build a spec from :meth:`to_dict` output; unknown or missing keys are errors."""
        expected = set(cls().to_dict())
        if set(data) != expected:
            raise ValueError(f'QuantSpec fields must be exactly {sorted(expected)}, got '
                             f'{sorted(data)}')
        return cls(**data)


def check_bits(bits: int) -> int:
    """Return ``bits`` if it is a supported bit-width, else raise ValueError."""
    if int(bits) not in SUPPORTED_BITS:
        raise ValueError(f'unsupported bit-width {bits}; expected one of {SUPPORTED_BITS}')
    return int(bits)
