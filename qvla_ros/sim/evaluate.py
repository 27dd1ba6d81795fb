# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Closed-loop evaluation of a policy on a simulated suite.

It reports the success rate with a Wilson interval and by task family (``env.task_family()``),
the deviation from a reference policy on the same observations, policy latency and packed
bytes.

Each episode runs the policy's chunks through :class:`~qvla_ros.runtime.chunking.ActionSchedule`
with the schedule the checkpoint records (``checkpoint_schedule``; ``execute_steps``
overrides it), in simulated time: the code, and so the behaviour, of policy_node. When a
reference policy is given (the FP model), it is queried on exactly the observations the
evaluated policy saw, so the action deviation is measured teacher-forced, step by step,
without changing the rollout.

Reference policies record ``execute_steps`` = the chunk size: behaviour-cloned policies stall
when they replan after fewer actions (docs/results/schedule.md).
"""

from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
import math
import multiprocessing
import time
from typing import List, Optional, Sequence

import numpy as np

from qvla_ros.kernels.linear import MixedBitLinear
from qvla_ros.models.checkpoint import load_policy
from qvla_ros.runtime.chunking import ActionSchedule, checkpoint_schedule, ScheduleSpec
from qvla_ros.sim.suites import check_horizon, make_env, sim_observation


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate: a model spec, the suite, seeds and the chunk schedule."""

    model: str
    suite: str = 'tabletop'
    seeds: Sequence[int] = tuple(range(100000, 100010))
    execute_steps: Optional[int] = None  # None: the schedule the checkpoint records
    reference: Optional[str] = None
    threads: int = 1
    max_steps: Optional[int] = None  # episode horizon; None: the suite's (tabletop 80, MW 200)

    def __post_init__(self):
        if self.execute_steps is not None and self.execute_steps < 1:
            raise ValueError(f'execute_steps must be >= 1, got {self.execute_steps}')
        check_horizon(self.max_steps)


def seed_range(text: str) -> range:
    """Return the seeds of ``text`` = 'A:B' (integers A < B); ValueError names the form."""
    first, _, last = text.partition(':')
    if not first.isdigit() or not last.isdigit() or int(last) <= int(first):
        raise ValueError(f'--seeds must be A:B with integers A < B, got {text!r}')
    return range(int(first), int(last))


def wilson(successes: int, n: int, z: float = 1.96):
    """Return the Wilson score interval (low, high) of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _episode(env, policy, reference, seed: int, spec: ScheduleSpec) -> dict:
    obs, text = env.reset(seed)
    done, success, steps, t_ns = False, False, 0, 0
    latencies, deviations = [], []
    schedule = ActionSchedule(spec)
    while not done:
        if schedule.needs_plan(t_ns):
            o = sim_observation(env, obs, text)
            t0 = time.perf_counter()
            chunk = policy.predict(o)
            latencies.append(time.perf_counter() - t0)
            if reference is not None:
                ref = reference.predict(o)
                deviations.append(float(np.linalg.norm(chunk.actions[0] - ref.actions[0])))
            schedule.add(chunk, t_ns)
        obs, success, done = env.step(schedule.action_at(t_ns))
        steps += 1
        t_ns += int(chunk.dt * 1e9)  # simulated time, in the chunk's steps
    return {'seed': seed, 'task': env.task_family(), 'success': bool(success), 'steps': steps,
            'latency_ms': 1e3 * float(np.mean(latencies)), 'deviation': deviations}


def _run(cfg: EvalConfig, seeds: List[int]) -> List[dict]:
    import torch
    torch.set_num_threads(cfg.threads)
    policy = load_policy(cfg.model)
    reference = load_policy(cfg.reference) if cfg.reference else None
    env = make_env(cfg.suite, max_steps=cfg.max_steps)
    try:
        spec = checkpoint_schedule(policy, execute_steps=cfg.execute_steps)
        return _episodes(env, policy, reference, seeds, spec)
    finally:
        env.close()


def _episodes(env, policy, reference, seeds: List[int], spec: ScheduleSpec) -> List[dict]:
    """Run the episodes after one untimed warm-up call of each policy.

    The first call of a process pays one-time costs (the CPU extension's build or load, first
    allocations) that are not the policy's latency; the warm-up keeps them out of it. Episodes
    are unchanged: each one resets the scene from its seed.
    """
    obs, text = env.reset(seeds[0])
    for p in (policy, reference):
        if p is not None:
            p.predict(sim_observation(env, obs, text))
    return [_episode(env, policy, reference, s, spec) for s in seeds]


def packed_bytes(policy) -> Optional[int]:
    """Return the bytes of the quantized layers of a policy, or None for FP models."""
    layers = [m for m in policy.modules() if isinstance(m, MixedBitLinear)]
    return sum(m.packed_bytes() for m in layers) if layers else None


def by_task(episodes: List[dict]) -> dict:
    """Return {task family: [successes, episodes]}, sorted by family."""
    out: dict = {}
    for e in episodes:
        tally = out.setdefault(e['task'], [0, 0])
        tally[0] += int(e['success'])
        tally[1] += 1
    return dict(sorted(out.items()))


def evaluate(cfg: EvalConfig, workers: int = 1) -> dict:
    """Run every seed (split over ``workers`` processes) and return the summary."""
    seeds = list(cfg.seeds)
    if not seeds:
        raise ValueError('no evaluation seeds given')
    if workers <= 1:
        episodes = _run(cfg, seeds)
    else:
        parts = [seeds[i::workers] for i in range(workers)]
        ctx = multiprocessing.get_context('spawn')
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            episodes = [e for part in pool.map(_run, [cfg] * workers, parts) for e in part]
    policy = load_policy(cfg.model)
    wins = sum(e['success'] for e in episodes)
    low, high = wilson(wins, len(episodes))
    devs = [e['deviation'] for e in episodes if e['deviation']]
    return {'config': {**asdict(cfg), 'seeds': [min(seeds), max(seeds) + 1]},
            'schedule': checkpoint_schedule(policy, execute_steps=cfg.execute_steps).to_dict(),
            'episodes': len(episodes), 'successes': wins,
            'success_rate': wins / len(episodes), 'wilson95': [low, high],
            'by_task': by_task(episodes),
            'mean_deviation': float(np.mean([d for ds in devs for d in ds])) if devs else None,
            'final_step_deviation': float(np.mean([ds[-1] for ds in devs])) if devs else None,
            'policy_latency_ms': float(np.mean([e['latency_ms'] for e in episodes])),
            'packed_bytes': packed_bytes(policy), 'per_episode': episodes}
