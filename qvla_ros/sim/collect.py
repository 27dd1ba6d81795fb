# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Roll out the scripted expert and write the rollout dataset (architecture.md 3.1)."""

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
from qvla_ros.sim.metaworld_suite import MetaWorldEnv
from qvla_ros.sim.tabletop import TabletopEnv

SUITES = ('tabletop', 'metaworld')


def make_env(suite: str, render: bool = True):
    """Return the environment of ``suite``."""
    if suite == 'tabletop':
        return TabletopEnv(render=render)
    if suite == 'metaworld':
        return MetaWorldEnv(render=render)
    raise ValueError(f'unknown suite {suite!r}; expected one of {SUITES}')


def collect(suite: str, episodes: int, out: Path, seed: int = 0, progress: bool = False,
            keep: Optional[Callable[[bool], bool]] = None) -> dict:
    """Record ``episodes`` expert episodes with seeds seed, seed+1, ...; return a summary.

    ``keep(success)`` filters episodes (default: keep all, failures flagged in the index).
    """
    env = make_env(suite)
    writer = RolloutWriter(out, DatasetInfo(env.action_dim, env.proprio_dim, env.control_hz,
                                            (env.camera,)))
    successes, written = 0, 0
    try:
        for i in tqdm(range(episodes), desc=f'collect {suite}', disable=not progress):
            obs, text = env.reset(seed + i)
            expert = env.expert()
            images, proprio, actions = [], [], []
            done, success = False, False
            while not done:
                action = expert.act()
                images.append(obs['image'])
                proprio.append(obs['proprio'])
                actions.append(action)
                obs, success, done = env.step(action)
            successes += int(success)
            if keep is not None and not keep(success):
                continue
            t = len(actions)
            writer.add_episode({env.camera: np.stack(images)}, np.stack(proprio),
                               np.stack(actions), np.arange(t, dtype=np.int64)
                               * int(1e9 / env.control_hz), text, bool(success), 'sim',
                               'expert')
            written += 1
    finally:
        env.close()
    return {'episodes': episodes, 'successes': successes, 'written': written}
