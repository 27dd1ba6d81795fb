# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Which action dimensions become the end-effector twist and the gripper: by their names.

A policy's ActionChunk names its dimensions (``x y z roll pitch yaw gripper`` for OpenVLA's
end-effector deltas); the command a robot gets is built from those names, never from
positions, so a model whose actions mean something else is refused instead of driving the arm
with them.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

LINEAR, ANGULAR, GRIPPER = ('x', 'y', 'z'), ('roll', 'pitch', 'yaw'), 'gripper'


@dataclass(frozen=True)
class EndEffectorMap:
    """Indices of the linear (3,) and angular (3,) deltas and of the gripper in an action."""

    linear: Tuple[int, int, int]
    angular: Optional[Tuple[int, int, int]]
    gripper: Optional[int]

    @classmethod
    def from_names(cls, names: Sequence[str]) -> 'EndEffectorMap':
        """Return the map of ``names``; ValueError unless x, y and z are all there."""
        names = list(names)
        missing = [n for n in LINEAR if n not in names]
        if missing:
            raise ValueError(f'the model names its action dimensions {names or "not at all"}; '
                             f'end-effector commands need {list(LINEAR)} (missing {missing})')
        angular = tuple(names.index(n) for n in ANGULAR) if all(
            n in names for n in ANGULAR) else None
        return cls(tuple(names.index(n) for n in LINEAR), angular,  # type: ignore[arg-type]
                   names.index(GRIPPER) if GRIPPER in names else None)

    def velocities(self, action: np.ndarray, dt: float) -> Tuple[np.ndarray, np.ndarray]:
        """Return (linear (3,), angular (3,)) velocities of a delta ``action`` held ``dt`` s."""
        lin = action[list(self.linear)] / dt
        ang = action[list(self.angular)] / dt if self.angular else np.zeros(3)
        return lin, ang

    def gripper_value(self, action: np.ndarray) -> Optional[float]:
        """Return the gripper command of ``action``, or None if the model has none."""
        return None if self.gripper is None else float(action[self.gripper])
