# Copyright 2026 qvla_ros authors. Apache-2.0.
"""One policy step and the chunk schedule: execute k of H steps, then replan."""

from collections import deque
from dataclasses import dataclass
import time
from typing import Deque, Optional, Protocol

import numpy as np

from qvla_ros.runtime.types import ActionChunk, Observation


class Policy(Protocol):
    """What the runtime needs from a model (architecture.md section 3.5)."""

    def predict(self, obs: Observation) -> ActionChunk:
        """Return a de-normalized action chunk for ``obs``."""


@dataclass(frozen=True)
class ScheduleConfig:
    """Chunk schedule: execute ``execute_steps`` of each chunk before replanning."""

    execute_steps: int = 4
    version: int = 1

    def __post_init__(self):
        if self.execute_steps < 1:
            raise ValueError(f'execute_steps must be >= 1, got {self.execute_steps}')


class ChunkRunner:
    """Queue actions from predicted chunks; replan when ``execute_steps`` were used."""

    def __init__(self, policy: Policy, config: ScheduleConfig):
        self._policy = policy
        self._config = config
        self._queue: Deque[np.ndarray] = deque()
        self.last_chunk: Optional[ActionChunk] = None
        self.last_latency_s = 0.0

    @property
    def needs_plan(self) -> bool:
        """True when the queue is empty and the next step needs a new chunk."""
        return not self._queue

    def plan(self, obs: Observation) -> ActionChunk:
        """Run the policy on ``obs`` and refill the queue with the first k actions."""
        start = time.perf_counter()
        chunk = self._policy.predict(obs)
        self.last_latency_s = time.perf_counter() - start
        steps = min(self._config.execute_steps, chunk.horizon)
        self._queue = deque(chunk.actions[:steps].copy())
        self.last_chunk = chunk
        return chunk

    def next_action(self) -> np.ndarray:
        """Pop the next action (A,); raise if no chunk has been planned."""
        if not self._queue:
            raise RuntimeError('no planned action: call plan() first')
        return self._queue.popleft()

    def reset(self) -> None:
        """Drop queued actions, e.g. after a watchdog trip or a new instruction."""
        self._queue.clear()
