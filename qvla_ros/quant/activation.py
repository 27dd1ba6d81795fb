# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Activation quantization: symmetric per-token dynamic integer grids (A8, A4), fake-quantized.

A layer's input x (..., K) is optionally rotated first (``rotation``; see
:mod:`qvla_ros.quant.rotation`), then each token is rounded on its own grid whose range is
``clip_ratio`` times the token's absmax: clipping the few largest entries of a token buys the
other entries a finer grid, which pays at 4 bits (QuaRot clips A4 at 0.9). With
``clip_search`` each layer's ratio is chosen from :data:`CLIP_GRID` on calibration inputs
(:mod:`qvla_ros.quant.act_clip`).
"""

from dataclasses import asdict, dataclass
from typing import Optional

import torch

from qvla_ros.core.primitives import token_codes

ACT_BITS = (4, 8, 16)  # 16: activations stay in floating point (a rotation alone)
ROTATIONS = ('hadamard', 'quarot')
CLIP_GRID = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)  # clip_search's candidates


@dataclass(frozen=True)
class ActSpec:
    """How a quantized layer treats its input: rotation, then per-token ``bits`` grids.

    bits: 4 or 8 (quantized), or 16 (not quantized, e.g. a rotation for the weights alone);
    clip_ratio: the fraction of a token's absmax its grid spans, in (0, 1];
    rotation: None, 'hadamard' (a randomized Hadamard transform of every layer input, folded
    into the weight columns) or 'quarot' (the backbone's residual stream rotated once and
    folded into the model's weights; layers that do not read the stream rotate online as
    with 'hadamard'); seed: the seed of the rotation's random signs;
    clip_search: each layer's clip_ratio was chosen on calibration data (``clip_ratio`` is
    then the ratio of the model as a whole only until the search has set each layer's).
    """

    bits: int = 8
    clip_ratio: float = 1.0
    rotation: Optional[str] = None
    seed: int = 0
    clip_search: bool = False

    def __post_init__(self):
        if self.bits not in ACT_BITS:
            raise ValueError(f'activation bits must be one of {ACT_BITS}, got {self.bits}')
        if not 0.0 < self.clip_ratio <= 1.0:
            raise ValueError(f'activation clip_ratio must be in (0, 1], got {self.clip_ratio}')
        if self.rotation is not None and self.rotation not in ROTATIONS:
            raise ValueError(f'activation rotation must be None or one of {ROTATIONS}, got '
                             f'{self.rotation!r}')
        if self.clip_search and not self.quantized:
            raise ValueError('an activation clip search needs quantized activations (bits 4 '
                             'or 8)')

    @property
    def quantized(self) -> bool:
        """True when activations are rounded (bits < 16)."""
        return self.bits < 16

    def label(self) -> str:
        """Return a short name, e.g. 'a4-hadamard' or 'a8' (plan method suffixes, cache keys)."""
        clip = '' if self.clip_ratio == 1.0 else f'-clip{self.clip_ratio:g}'
        if self.clip_search:  # the ratio the search starts from is part of its result
            clip = '-clipsearch' + clip[len('-clip'):]
        rot = f'-{self.rotation}' + (f'{self.seed}' if self.seed else '') if self.rotation else ''
        return f'a{self.bits}{clip}{rot}'

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (``clip_search`` only when set: older readers refuse it)."""
        data = asdict(self)
        if not self.clip_search:
            del data['clip_search']
        return data

    @classmethod
    def from_dict(cls, data: dict) -> 'ActSpec':
        """Build a spec from :meth:`to_dict` output; unknown keys are errors."""
        unknown = sorted(set(data) - set(asdict(cls())))
        if unknown:
            raise ValueError(f'unknown activation spec fields {unknown}; expected '
                             f'{sorted(asdict(cls()))}')
        return cls(**data)


def fake_quant_tokens(x: torch.Tensor, spec: ActSpec) -> torch.Tensor:
    """Return x (..., K) quantized-dequantized per token (last dim) on a symmetric grid.

    The gradient passes straight through the rounding, so that action-space gradients (the
    sensitivity proxy) reach the layers upstream of a quantized activation.
    """
    if not spec.quantized:
        return x
    codes, scale = token_codes(x, spec.bits, spec.clip_ratio)  # (..., K), (..., 1)
    q = codes * scale
    return x + (q - x.detach()) if x.requires_grad else q
