# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Plain data types shared by models, the runtime and the ROS layer."""

from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np


@dataclass(frozen=True)
class Observation:
    """One policy input: RGB images per camera, an instruction and proprioception.

    images: camera name -> uint8 array (H, W, 3), RGB. proprio: float32 (P,).
    """

    images: Dict[str, np.ndarray]
    instruction: str
    proprio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    stamp_ns: int = 0


@dataclass(frozen=True)
class ActionChunk:
    """A de-normalized chunk of actions, ``actions`` float32 (H, A), spaced ``dt`` seconds."""

    actions: np.ndarray
    dt: float
    stamp_ns: int = 0
    action_space: str = 'ee_delta'
    dimension_names: Tuple[str, ...] = ()

    def __post_init__(self):
        if self.actions.ndim != 2:
            raise ValueError(f'ActionChunk.actions must be (H, A), got shape '
                             f'{tuple(self.actions.shape)}')
        if not self.dt > 0:
            raise ValueError(f'ActionChunk.dt must be > 0 seconds, got {self.dt}')
        if self.dimension_names and len(self.dimension_names) != self.actions.shape[1]:
            raise ValueError(f'ActionChunk has {self.actions.shape[1]} action dims but '
                             f'{len(self.dimension_names)} dimension names')

    @property
    def horizon(self) -> int:
        """Number of steps in the chunk."""
        return int(self.actions.shape[0])


def check_version(owner: str, version: int, expected: int = 1) -> None:
    """Raise ValueError unless a saved config's ``version`` is the one this code reads.

    Configs written into checkpoints and plans (model configs, QuantSpec, ScheduleSpec) carry
    their own version so that a folder written by a later format is refused, not misread.
    """
    if version != expected:
        raise ValueError(f'{owner}.version must be {expected}, got {version!r}')
