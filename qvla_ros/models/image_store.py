# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Camera frames of a rollout dataset, read from the episode files when a batch needs them.

Training draws random samples; holding every frame in memory does not fit a robot PC: two
128 px cameras over 2000 Meta-World demonstrations are about 17 GB. Episode files are
safetensors, so one frame of one camera is a slice read from the memory-mapped file (the
page cache keeps the hot ones).
"""

from collections import OrderedDict
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

MAX_OPEN = 256  # episode files kept open at once


class EpisodeImages:
    """uint8 frames (B, N, H, W, 3) of ``cameras`` for sample indices into ``entries``."""

    def __init__(self, root: Path, entries: List[dict], cameras: Sequence[str]):
        self.paths = [Path(root) / e['file'] for e in entries]
        steps = np.array([e['num_steps'] for e in entries], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(steps)])  # (E + 1,)
        self.cameras = tuple(cameras)
        self._open: 'OrderedDict[int, object]' = OrderedDict()

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _handle(self, episode: int):
        from safetensors import safe_open
        if episode in self._open:
            self._open.move_to_end(episode)
            return self._open[episode]
        handle = safe_open(str(self.paths[episode]), framework='numpy')
        self._open[episode] = handle
        if len(self._open) > MAX_OPEN:
            self._open.popitem(last=False)
        return handle

    def get(self, idx: torch.Tensor) -> torch.Tensor:
        """Return the frames of samples ``idx`` (B,) as uint8 (B, N, H, W, 3)."""
        flat = np.asarray(idx, np.int64).reshape(-1)
        episode = np.searchsorted(self.starts, flat, side='right') - 1
        frames = []
        for e, i in zip(episode, flat):
            handle = self._handle(int(e))
            step = int(i - self.starts[e])
            frames.append(np.stack([handle.get_slice(f'image.{c}')[step]
                                    for c in self.cameras]))
        return torch.from_numpy(np.stack(frames))
