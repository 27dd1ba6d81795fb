# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Roll out the scripted expert and write the rollout dataset (architecture.md 3.1)."""

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
from qvla_ros.sim.evaluate import check_horizon, EXECUTE_STEPS
from qvla_ros.sim.metaworld_suite import MetaWorldEnv
from qvla_ros.sim.tabletop import TabletopEnv

SUITES = ('tabletop', 'metaworld')


def make_env(suite: str, render: bool = True, max_steps: Optional[int] = None):
    """Return the environment of ``suite``; ``max_steps`` overrides its episode horizon."""
    check_horizon(max_steps)
    horizon = {} if max_steps is None else {'max_steps': max_steps}
    if suite == 'tabletop':
        return TabletopEnv(render=render, **horizon)
    if suite == 'metaworld':
        return MetaWorldEnv(render=render, **horizon)
    raise ValueError(f'unknown suite {suite!r}; expected one of {SUITES}')


class PolicyActor:
    """Act with a policy the way the evaluator does: execute ``execute_steps`` per chunk."""

    def __init__(self, policy, env, text: str, execute_steps: int = EXECUTE_STEPS):
        self.policy, self.env, self.text, self.k = policy, env, text, execute_steps
        self.queue = []

    def act(self, obs: dict) -> np.ndarray:
        """Return the next action (A,) for ``obs``."""
        from qvla_ros.runtime.types import Observation
        if not self.queue:
            chunk = self.policy.predict(Observation({self.env.camera: obs['image']}, self.text,
                                                    obs['proprio']))
            self.queue = list(chunk.actions[:self.k])
        return np.asarray(self.queue.pop(0), np.float32)


def collect(suite: str, episodes: int, out: Path, seed: int = 0, progress: bool = False,
            keep: Optional[Callable[[bool], bool]] = None, action_noise: float = 0.0,
            policy: Optional[str] = None, execute_steps: int = EXECUTE_STEPS) -> dict:
    """Record ``episodes`` episodes with seeds seed, seed+1, ...; return a summary.

    The scripted expert acts unless ``policy`` (a model spec or checkpoint folder) is given;
    then that policy's executed actions are recorded (calibration data from FP rollouts), with
    ``execute_steps`` actions of each chunk run before replanning, as the evaluator runs them.
    ``keep(success)`` filters episodes (default: keep all, failures flagged in the index).
    ``action_noise`` > 0 adds Gaussian noise of that standard deviation (action units) to every
    executed dimension but the gripper, while the dataset records the expert's clean action: the
    states drift off the expert's path and the labels show how to recover (DART-style).
    """
    if action_noise < 0:
        raise ValueError(f'action_noise must be >= 0, got {action_noise}')
    if execute_steps < 1:
        raise ValueError(f'execute_steps must be >= 1, got {execute_steps}')
    model = None
    if policy is not None:  # load torch models before the renderer's EGL context (segfault)
        from qvla_ros.models.checkpoint import load_policy
        model = load_policy(policy)
    env = make_env(suite)
    writer = RolloutWriter(out, DatasetInfo(env.action_dim, env.proprio_dim, env.control_hz,
                                            (env.camera,)))
    successes, written = 0, 0
    try:
        for i in tqdm(range(episodes), desc=f'collect {suite}', disable=not progress):
            obs, text = env.reset(seed + i)
            actor = env.expert() if model is None else PolicyActor(model, env, text, execute_steps)
            rng = np.random.default_rng((seed + i, 7))
            images, proprio, actions = [], [], []
            done, success = False, False
            while not done:
                action = actor.act() if model is None else actor.act(obs)
                images.append(obs['image'])
                proprio.append(obs['proprio'])
                actions.append(action)
                executed = action.copy()
                if action_noise > 0:
                    executed[:-1] += rng.normal(0.0, action_noise, executed.size - 1)
                obs, success, done = env.step(executed)
            successes += int(success)
            if keep is not None and not keep(success):
                continue
            t = len(actions)
            writer.add_episode({env.camera: np.stack(images)}, np.stack(proprio),
                               np.stack(actions), np.arange(t, dtype=np.int64)
                               * int(1e9 / env.control_hz), text, bool(success), 'sim',
                               'expert' if model is None else 'fp')
            written += 1
    finally:
        env.close()
    return {'episodes': episodes, 'successes': successes, 'written': written}
