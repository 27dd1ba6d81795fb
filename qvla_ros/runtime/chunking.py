# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Action schedules: which action to execute at time t, given the chunks predicted so far.

* ``replan``: execute the first ``execute_steps`` actions of the newest chunk, then replan
  (the plan for step k is asked for at step k, so exactly k actions of each chunk run);
  after its first tick a chunk advances one step per control tick, so timer jitter and the
  wait for inference neither repeat nor skip a step, and a node runs the schedule as the
  evaluation (one step per simulated step) does;
* ``ensemble``: temporal ensembling (ACT): every chunk covering t votes for the action at t,
  combined by a named aggregator (``latest``, ``mean`` or ``exp`` with weights
  exp(-decay * age_in_steps), oldest first, as in ACT).
"""

from collections import deque
from dataclasses import asdict, dataclass
from typing import Deque, Optional

import numpy as np

from qvla_ros.core.types import ActionChunk, check_version

AGGREGATORS = ('latest', 'mean', 'exp')
MODES = ('replan', 'ensemble')


@dataclass(frozen=True)
class ScheduleSpec:
    """Which schedule to run and its knobs."""

    mode: str = 'replan'
    execute_steps: int = 4
    aggregator: str = 'exp'
    decay: float = 0.1
    version: int = 1

    def __post_init__(self):
        check_version('ScheduleSpec', self.version)
        if self.mode not in MODES:
            raise ValueError(f'schedule mode must be one of {MODES}, got {self.mode!r}')
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f'aggregator must be one of {AGGREGATORS}, got {self.aggregator!r}')
        if self.execute_steps < 1 or self.decay < 0:
            raise ValueError('execute_steps must be >= 1 and decay >= 0')

    def to_dict(self) -> dict:
        """Return the JSON-ready schedule (what checkpoints record)."""
        return asdict(self)


def checkpoint_schedule(policy, mode: Optional[str] = None, execute_steps: Optional[int] = None,
                        aggregator: Optional[str] = None,
                        decay: Optional[float] = None) -> ScheduleSpec:
    """Return the schedule a checkpoint records, with the fields given (not None) overridden.

    Checkpoints that record none (and random-init or upstream models) run their whole chunk
    before replanning, as OpenVLA-OFT does.
    """
    stored = getattr(policy, 'qvla_schedule', None)
    if stored is None:
        stored = {'mode': 'replan'}
        if execute_steps is None:
            stored['execute_steps'] = int(policy.metadata()['chunk_size'])
    given = {'mode': mode, 'execute_steps': execute_steps, 'aggregator': aggregator,
             'decay': decay}
    values = {**stored, **{k: v for k, v in given.items() if v is not None}}
    return ScheduleSpec(**values)


@dataclass(eq=False)  # identity: deque.remove must not compare action arrays
class _Entry:
    """A chunk, when its step 0 is due, and the step its last control tick ran."""

    t0: int
    chunk: ActionChunk
    step: Optional[int] = None
    t_step: int = 0

    def index_at(self, t_ns: int) -> int:
        """Return the step due at ``t_ns``.

        Before its first tick: the whole periods since ``t0`` (a slow plan skips the steps
        whose time has passed). After: one step per later tick, more only when ticks were
        missed, so timer jitter never repeats or skips a step.
        """
        dt = int(self.chunk.dt * 1e9)
        if self.step is None:
            return int((t_ns - self.t0) // dt)
        if t_ns <= self.t_step:
            return self.step
        return self.step + max(1, round((t_ns - self.t_step) / dt))


class ActionSchedule:
    """Chunks stamped with their start time (ns); ``action_at`` picks the action for t."""

    def __init__(self, spec: ScheduleSpec):
        self.spec = spec
        self._chunks: Deque[_Entry] = deque()
        self.epoch = 0  # counts clears: a plan started before one belongs to a dropped past

    def add(self, chunk: ActionChunk, t0_ns: int, epoch: Optional[int] = None) -> bool:
        """Register a chunk whose step 0 is due at ``t0_ns``; return whether it was kept.

        ``epoch``: the value of ``self.epoch`` when its observation was taken; a chunk
        planned before a ``clear`` (for an old instruction, before a watchdog trip) is dropped.
        """
        if epoch is not None and epoch != self.epoch:
            return False
        if self.spec.mode == 'replan':
            while len(self._chunks) > 1:
                self._chunks.popleft()
        self._chunks.append(_Entry(t0_ns, chunk))
        return True

    def clear(self) -> None:
        """Drop every chunk (watchdog trip, new instruction, re-enable)."""
        self._chunks.clear()
        self.epoch += 1

    def needs_plan(self, t_ns: int) -> bool:
        """Return True when a new chunk should be predicted for the tick at ``t_ns``."""
        if self.spec.mode == 'ensemble' or not self._chunks:
            return True
        last = self._chunks[-1]
        return last.index_at(t_ns) >= min(self.spec.execute_steps, last.chunk.horizon)

    def action_at(self, t_ns: int) -> Optional[np.ndarray]:
        """Return the action (A,) to execute at the tick ``t_ns``, or None if none covers it.

        Replan uses the newest chunk that covers t; if a replan is late it keeps executing
        that chunk past ``execute_steps`` (up to its horizon) rather than stalling.
        """
        votes = []
        for entry in list(self._chunks):
            i = entry.index_at(t_ns)
            if 0 <= i < entry.chunk.horizon:
                votes.append(entry.chunk.actions[i])
                entry.step, entry.t_step = i, t_ns
            elif i >= entry.chunk.horizon:
                self._chunks.remove(entry)
        if not votes:
            return None
        if self.spec.mode == 'replan' or self.spec.aggregator == 'latest':
            return votes[-1]
        stack = np.stack(votes)  # (V, A), oldest first
        if self.spec.aggregator == 'mean':
            return stack.mean(0)
        w = np.exp(-self.spec.decay * np.arange(len(votes)))  # ACT: oldest gets weight 1
        return (w[:, None] * stack).sum(0) / w.sum()
