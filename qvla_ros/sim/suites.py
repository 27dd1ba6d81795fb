# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The simulated suites behind one interface: which exist, making one, and its observations.

A suite environment has ``reset(seed) -> (obs, instruction)``, ``step(action) -> (obs,
success, done)``, ``expert()``, ``task_family()``, ``close()`` and the class attributes
``action_dim``, ``proprio_dim``, ``control_hz`` and ``cameras``; ``obs`` is
``{'images': {camera: uint8 (H, W, 3)} or None, 'proprio': float32 (P,)}``.
"""

from typing import Optional, Sequence

from qvla_ros.core.types import Observation
from qvla_ros.sim.metaworld_suite import check_tasks, MetaWorldEnv
from qvla_ros.sim.tabletop import TabletopEnv

SUITES = ('tabletop', 'metaworld')


def make_env(suite: str, render: bool = True, max_steps: Optional[int] = None,
             tasks: Optional[Sequence[str]] = None):
    """Return the environment of ``suite``; ``max_steps`` overrides its episode horizon.

    ``tasks`` (Meta-World only) restricts the suite to those MT10 tasks: each seed then draws
    one of them.
    """
    check_horizon(max_steps)
    check_suite_tasks(suite, tasks)
    options = {} if max_steps is None else {'max_steps': max_steps}
    if suite == 'tabletop':
        return TabletopEnv(render=render, **options)
    if suite == 'metaworld':
        if tasks is not None:
            options['tasks'] = tuple(tasks)
        return MetaWorldEnv(render=render, **options)
    raise ValueError(f'unknown suite {suite!r}; expected one of {SUITES}')


def check_suite_tasks(suite: str, tasks: Optional[Sequence[str]]) -> None:
    """Raise ValueError unless ``tasks`` is None or names Meta-World tasks for that suite."""
    if tasks is None:
        return
    if suite != 'metaworld':
        raise ValueError(f'tasks selects Meta-World tasks; the {suite} suite draws its task '
                         f'from the seed (expected no tasks for {suite})')
    check_tasks(tasks)


def check_horizon(max_steps: Optional[int]) -> None:
    """Raise ValueError unless ``max_steps`` is None (the suite's horizon) or >= 1."""
    if max_steps is not None and max_steps < 1:
        raise ValueError(f'max_steps must be >= 1 (or None for the suite default), got '
                         f'{max_steps}')


def sim_observation(env, obs: dict, text: str) -> Observation:
    """Return the policy's Observation of a suite step ``obs`` (every camera, proprio)."""
    return Observation(dict(obs['images'] or {}), text, obs['proprio'])
