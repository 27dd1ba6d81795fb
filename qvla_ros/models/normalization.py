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
