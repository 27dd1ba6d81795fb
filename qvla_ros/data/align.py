# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Turn time-stamped streams into rollout episodes: shared by the bag importer and the node.

Each executed action becomes one sample, taken at most once per control period
(1 / control_hz), with the last image of every camera, proprio, instruction and gripper
command stamped at or before it. Episodes split where the instruction changes, where the
action stream pauses longer than ``max_gap_s``, or at start/end markers. A sample whose action
or proprio is not finite (a NaN from a driver, say) is dropped and counted, so it never
reaches training.
"""

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np


@dataclass
class Stream:
    """Stamped values in time order: stamps int64 ns, values any per-message object."""

    name: str
    stamps: List[int] = field(default_factory=list)
    values: list = field(default_factory=list)

    def add(self, stamp_ns: int, value) -> None:
        """Append one message; stamps must not go backwards."""
        if self.stamps and stamp_ns < self.stamps[-1]:
            raise ValueError(f'{self.name}: stamps are not sorted ({stamp_ns} after '
                             f'{self.stamps[-1]} ns); expected non-decreasing header stamps')
        self.stamps.append(int(stamp_ns))
        self.values.append(value)

    def last_at(self, stamp_ns: int):
        """Return the last value stamped at or before ``stamp_ns``, or None."""
        i = bisect_right(self.stamps, stamp_ns)
        return self.values[i - 1] if i else None


@dataclass(frozen=True)
class SplitRule:
    """How a recording is cut into episodes."""

    on_instruction_change: bool = True
    max_gap_s: Optional[float] = 1.0
    markers: bool = False   # use 'start' / 'end' values of a marker stream


@dataclass
class Episode:
    """One aligned episode, ready for RolloutWriter.add_episode."""

    instruction: str
    images: Dict[str, List[np.ndarray]]  # camera -> one frame per step
    proprio: List[np.ndarray]
    actions: List[np.ndarray]
    stamps: List[int]


def _marker_windows(markers: Stream) -> List[Tuple[int, int]]:
    windows, start = [], None
    for t, v in zip(markers.stamps, markers.values):
        if v == 'start':
            start = t
        elif v == 'end' and start is not None:
            windows.append((start, t))
            start = None
    return windows


def align(actions: Stream, images: Union[Stream, Dict[str, Stream]], instructions: Stream,
          control_hz: float,
          rule: SplitRule, proprio: Optional[Stream] = None, gripper: Optional[Stream] = None,
          markers: Optional[Stream] = None, proprio_dim: int = 0
          ) -> Tuple[List[Episode], int]:
    """Return (the episodes of the recording, non-finite samples dropped).

    Actions' values are float arrays (A,). ``images`` is one stream per camera (a single
    stream is the camera ``images.name``); a sample needs a frame of every camera.
    """
    cameras = images if isinstance(images, dict) else {images.name: images}
    if not actions.stamps:
        raise ValueError(f'{actions.name}: no action messages; nothing to align')
    period = int(1e9 / control_hz)
    windows = _marker_windows(markers) if rule.markers and markers is not None else None
    episodes: List[Episode] = []
    current: Optional[Episode] = None
    last_t, dropped = None, 0
    for t, action in zip(actions.stamps, actions.values):
        if last_t is not None and current is not None and t - current.stamps[-1] < period:
            continue  # faster than control_hz: keep the first action of each period
        frames = {c: stream.last_at(t) for c, stream in cameras.items()}
        text = instructions.last_at(t)
        inside = windows is None or any(a <= t <= b for a, b in windows)
        if not inside:
            current, last_t = None, t  # outside start/end markers: the episode is over
            continue
        if any(f is None for f in frames.values()) or not text:
            continue  # nothing to pair this action with yet; it does not split an episode
        act, vec = _sample(action, t, gripper, proprio, proprio_dim)
        if not (np.isfinite(act).all() and np.isfinite(vec).all()):
            dropped += 1
            continue
        gap = last_t is not None and rule.max_gap_s is not None and \
            (t - last_t) > rule.max_gap_s * 1e9
        new_window = windows is not None and current is not None and not any(
            a <= current.stamps[-1] <= b and a <= t <= b for a, b in windows)
        if current is None or gap or new_window or (
                rule.on_instruction_change and text != current.instruction):
            current = Episode(text, {c: [] for c in cameras}, [], [], [])
            episodes.append(current)
        for c, frame in frames.items():
            current.images[c].append(frame)
        current.proprio.append(vec)
        current.actions.append(act)
        current.stamps.append(t)
        last_t = t
    return [e for e in episodes if e.actions], dropped


def _sample(action, t: int, gripper: Optional[Stream], proprio: Optional[Stream],
            proprio_dim: int) -> Tuple[np.ndarray, np.ndarray]:
    """Return the action (A,), gripper filled in, and proprio (proprio_dim,) at ``t``."""
    act = np.asarray(action, np.float32).copy()
    if gripper is not None and gripper.last_at(t) is not None:
        act[-1] = float(gripper.last_at(t))
    state = proprio.last_at(t) if proprio is not None else None
    vec = np.zeros(proprio_dim, np.float32)
    if state is not None:
        vec[:min(proprio_dim, len(state))] = np.asarray(state, np.float32)[:proprio_dim]
    return act, vec


def twist_to_action(linear: Sequence[float], angular: Sequence[float], dt: float) -> np.ndarray:
    """Return the 7-D ee_delta action of a twist held for ``dt`` s (gripper slot zero)."""
    return np.array([*(np.asarray(linear) * dt), *(np.asarray(angular) * dt), 0.0], np.float32)
