# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Per-dimension action limits and the finite check, applied before anything actuates."""

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class ActionLimits:
    """Clamp bounds per action dimension; empty means unbounded."""

    low: Sequence[float] = ()
    high: Sequence[float] = ()

    def __post_init__(self):
        if len(self.low) != len(self.high):
            raise ValueError(f'action_low has {len(self.low)} values but action_high has '
                             f'{len(self.high)}')
        if any(lo > hi for lo, hi in zip(self.low, self.high)):
            raise ValueError('every action_low must be <= its action_high')

    def check_dim(self, action_dim: int) -> None:
        """Raise ValueError if the limits do not fit ``action_dim``."""
        if self.low and len(self.low) != action_dim:
            raise ValueError(f'action limits have {len(self.low)} dimensions, the model '
                             f'predicts {action_dim}')

    def apply(self, action: np.ndarray) -> Optional[np.ndarray]:
        """Return the clamped action, or None if any value is NaN or infinite."""
        if not np.all(np.isfinite(action)):
            return None
        if not self.low:
            return action
        return np.clip(action, np.asarray(self.low, action.dtype),
                       np.asarray(self.high, action.dtype))
