# Copyright 2026 qvla_ros authors. Apache-2.0.
"""One observation from several cameras: frames of each camera taken at about the same time.

Cameras run at their own rates and are not triggered together; message_filters has no pip
wheel. As its ApproximateTime policy does, a few recent frames of each camera are kept: the
camera whose newest frame is oldest sets the moment, every other camera contributes its frame
closest to that moment, and the set is used only when all stamps lie within ``max_skew``.
Nothing here knows ROS: stamps are nanoseconds, receive times monotonic seconds.
"""

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Optional, Sequence, Tuple

import numpy as np

HISTORY = 4  # frames kept per camera: a 30 Hz camera beside a 15 Hz one needs 2-3


@dataclass
class Frame:
    """One camera frame: RGB pixels, capture stamp (ns) and receive time (s)."""

    image: np.ndarray
    stamp_ns: int
    received: float
    used: bool = False


class CameraSync:
    """Recent frames of ``cameras``; ``assemble`` returns one frame each whose stamps agree."""

    def __init__(self, cameras: Sequence[str], max_skew_s: float):
        if not cameras:
            raise ValueError('expected at least one camera name')
        if max_skew_s < 0:
            raise ValueError(f'max_skew must be >= 0 seconds, got {max_skew_s}')
        self.cameras = tuple(cameras)
        self.max_skew_ns = int(max_skew_s * 1e9)
        self.frames: Dict[str, Deque[Frame]] = {c: deque(maxlen=HISTORY) for c in self.cameras}
        self.dropped = 0  # frames of the moment's camera that left unused (superseded)

    def add(self, camera: str, image: np.ndarray, stamp_ns: int, received: float) -> None:
        """Keep a new frame of ``camera`` (one older than its newest is ignored)."""
        frames = self.frames[camera]
        if frames and stamp_ns < frames[-1].stamp_ns:
            return  # out of order: a late copy of an older frame
        if len(frames) == frames.maxlen and not frames[0].used and camera == self._leader():
            self.dropped += 1
        frames.append(Frame(image, stamp_ns, received))

    def _leader(self) -> Optional[str]:
        """Return the camera whose newest frame is oldest: the others wait for it."""
        newest = {c: f[-1].stamp_ns for c, f in self.frames.items() if f}
        if len(newest) != len(self.cameras):
            return None
        return min(newest, key=lambda c: newest[c])

    def stale(self, now: float, timeout_s: float) -> Optional[str]:
        """Return why the cameras cannot be used now (missing or old frames), else None."""
        for camera in self.cameras:
            if not self.frames[camera]:
                return f'waiting for a frame from camera {camera!r}'
            age = now - self.frames[camera][-1].received
            if age > timeout_s:
                return f'camera {camera!r} frame is {age:.2f} s old (image_timeout {timeout_s} s)'
        return None

    def assemble(self) -> Tuple[Optional[Dict[str, np.ndarray]], str]:
        """Return ({camera: image} in camera order, '') or (None, why not); marks them used."""
        leader = self._leader()
        if leader is None:
            missing = next(c for c in self.cameras if not self.frames[c])
            return None, f'waiting for a frame from camera {missing!r}'
        moment = self.frames[leader][-1].stamp_ns
        chosen = {c: min(self.frames[c], key=lambda f: abs(f.stamp_ns - moment))
                  for c in self.cameras}
        skew = max(f.stamp_ns for f in chosen.values()) - min(f.stamp_ns for f in chosen.values())
        if skew > self.max_skew_ns:
            return None, (f'camera frames are {skew / 1e6:.1f} ms apart (max_sync_skew '
                          f'{self.max_skew_ns / 1e6:.1f} ms)')
        for frame in chosen.values():
            frame.used = True
        return {c: chosen[c].image for c in self.cameras}, ''

    def fresh(self) -> bool:
        """Whether the moment's camera has a frame no observation used yet."""
        leader = self._leader()
        return leader is not None and not self.frames[leader][-1].used
