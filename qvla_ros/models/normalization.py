# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Action normalization with per-dimension q01/q99 bounds (OpenVLA's BOUNDS_Q99).

Stats live under a key (OpenVLA's ``unnorm_key``): ``{key: {'action': {'q01': [...],
'q99': [...], 'mask': [...]}}}``. Dimensions whose mask is False (the gripper, as upstream)
pass through unchanged. A missing key or missing stats is an error listing what exists;
normalization is never skipped silently.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class ActionNormalizer:
    """Maps actions to [-1, 1] per dimension: 2 (a - q01) / (q99 - q01) - 1, masked dims kept."""

    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray

    def __post_init__(self):
        shapes = {self.q01.shape, self.q99.shape, self.mask.shape}
        if len(shapes) != 1 or self.q01.ndim != 1:
            raise ValueError(f'q01, q99 and mask must be equal 1-D shapes, got {shapes}')
        if not (np.isfinite(self.q01).all() and np.isfinite(self.q99).all()):
            raise ValueError('normalization bounds must be finite; got q01 '
                             f'{self.q01.tolist()}, q99 {self.q99.tolist()}')
        bad = np.flatnonzero(self.q01 > self.q99)
        if bad.size:
            raise ValueError(f'normalization bounds need q01 <= q99 on every dimension; '
                             f'dimension {int(bad[0])} has q01 {float(self.q01[bad[0]])} > '
                             f'q99 {float(self.q99[bad[0]])}')

    @classmethod
    def from_stats(cls, stats: Dict, key: Optional[str] = None) -> 'ActionNormalizer':
        """Build from a norm-stats dict; ``key`` may be omitted when there is exactly one."""
        if not stats:
            raise ValueError('no normalization statistics: expected {key: {"action": '
                             '{"q01", "q99"}}}')
        if key is None:
            if len(stats) != 1:
                raise ValueError(f'several norm-stats keys {sorted(stats)}; pick one '
                                 '(unnorm_key)')
            key = next(iter(stats))
        if key not in stats:
            raise ValueError(f'unnorm_key {key!r} not in the norm stats; available keys: '
                             f'{sorted(stats)}')
        action = stats[key].get('action') if isinstance(stats[key], dict) else None
        if not action or 'q01' not in action or 'q99' not in action:
            raise ValueError(f'norm stats {key!r} lack action q01/q99; got '
                             f'{sorted(action or {})}')
        try:
            q01 = np.asarray(action['q01'], np.float32)
            q99 = np.asarray(action['q99'], np.float32)
            mask = np.asarray(action.get('mask', [True] * q01.size), bool)
        except (TypeError, ValueError) as err:
            raise ValueError(f'norm stats {key!r}: q01, q99 and mask must be lists of numbers '
                             f'({err})') from None
        return cls(q01, q99, mask)

    @classmethod
    def fit(cls, actions: np.ndarray, mask: Optional[Sequence[bool]] = None) -> 'ActionNormalizer':
        """Return bounds fitted on actions (T, A): the 1st and 99th percentiles."""
        q01 = np.quantile(actions, 0.01, axis=0).astype(np.float32)
        q99 = np.quantile(actions, 0.99, axis=0).astype(np.float32)
        m = np.ones(actions.shape[1], bool) if mask is None else np.asarray(mask, bool)
        return cls(q01, q99, m)

    def to_stats(self, key: str) -> Dict:
        """Return the JSON-ready stats under ``key``."""
        return {key: {'action': {'q01': self.q01.tolist(), 'q99': self.q99.tolist(),
                                 'mask': self.mask.tolist()}}}

    def _span(self):
        return np.maximum(self.q99 - self.q01, 1e-8)

    def normalize(self, actions):
        """Map raw actions (..., A) to [-1, 1] (clipped); masked dims unchanged."""
        lib = torch if isinstance(actions, torch.Tensor) else np
        q01, span, mask = (self._as(actions, v) for v in (self.q01, self._span(), self.mask))
        out = lib.clip(2 * (actions - q01) / span - 1, -1, 1)
        return lib.where(mask, out, actions)

    def unnormalize(self, normed):
        """Map normalized actions (..., A) back to raw units; masked dims unchanged."""
        lib = torch if isinstance(normed, torch.Tensor) else np
        q01, span, mask = (self._as(normed, v) for v in (self.q01, self._span(), self.mask))
        return lib.where(mask, 0.5 * (lib.clip(normed, -1, 1) + 1) * span + q01, normed)

    @staticmethod
    def _as(like, value):
        if isinstance(like, torch.Tensor):
            return torch.as_tensor(value, device=like.device).to(
                like.dtype if value.dtype != bool else torch.bool)
        return value


NORMALIZATION_TYPES = {'bounds_q99': ('q01', 'q99'), 'bounds': ('min', 'max')}


@dataclass(frozen=True)
class BoundsNormalizer:
    """OpenVLA-OFT's action and proprio normalization, formula for formula.

    ``kind`` is upstream's ``ACTION_PROPRIO_NORMALIZATION_TYPE``: 'bounds_q99' (q01/q99:
    LIBERO, Bridge) or 'bounds' (min/max: ALOHA). ``eps`` is what upstream adds to the span:
    1e-8 in OFT, 0 in OpenVLA's ``unnormalize``. Unlike :class:`ActionNormalizer`, model
    outputs are not clipped before unnormalizing; proprio is clipped to [-1, 1] after the
    mask, masked dimensions included, as upstream ``normalize_proprio`` does.
    """

    low: np.ndarray
    high: np.ndarray
    mask: np.ndarray
    kind: str = 'bounds_q99'
    eps: float = 1e-8

    def __post_init__(self):
        if self.kind not in NORMALIZATION_TYPES:
            raise ValueError(f'normalization must be one of {sorted(NORMALIZATION_TYPES)}, got '
                             f'{self.kind!r}')
        ActionNormalizer(self.low, self.high, self.mask)  # same shape and bound checks

    @property
    def q01(self) -> np.ndarray:
        """The low bounds (the name the dimension checks read)."""
        return self.low

    @classmethod
    def from_stats(cls, stats: Dict, key: str, kind: str, eps: float = 1e-8,
                   part: str = 'action') -> 'BoundsNormalizer':
        """Build from ``stats[key][part]`` with the bounds ``kind`` names."""
        lo_name, hi_name = NORMALIZATION_TYPES.get(kind, (None, None))
        entry = stats.get(key, {}).get(part) if isinstance(stats.get(key), dict) else None
        if not entry or lo_name not in entry or hi_name not in entry:
            raise ValueError(f'norm stats {key!r} lack {part} {lo_name}/{hi_name}, which '
                             f'normalization {kind!r} needs; got {sorted(entry or {})}')
        try:
            low = np.asarray(entry[lo_name], np.float64)
            high = np.asarray(entry[hi_name], np.float64)
            mask = np.asarray(entry.get('mask', [True] * low.size), bool)
        except (TypeError, ValueError) as err:
            raise ValueError(f'norm stats {key!r} {part}: bounds must be lists of numbers '
                             f'({err})') from None
        return cls(low, high, mask, kind, eps)

    def to_stats(self, key: str, part: str = 'action') -> Dict:
        """Return the JSON-ready stats under ``key``."""
        lo_name, hi_name = NORMALIZATION_TYPES[self.kind]
        return {key: {part: {lo_name: self.low.tolist(), hi_name: self.high.tolist(),
                             'mask': self.mask.tolist()}}}

    def unnormalize(self, normed: np.ndarray) -> np.ndarray:
        """Return raw actions: 0.5 (x + 1) (high - low + eps) + low on masked dims, x kept."""
        x = np.asarray(normed, np.float64)
        raw = 0.5 * (x + 1) * (self.high - self.low + self.eps) + self.low
        return np.where(self.mask, raw, x)

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """Return clip(where(mask, 2 (v - low) / (high - low + eps) - 1, v), -1, 1)."""
        v = np.asarray(values, np.float64)
        scaled = 2 * (v - self.low) / (self.high - self.low + self.eps) - 1
        return np.clip(np.where(self.mask, scaled, v), -1.0, 1.0)
