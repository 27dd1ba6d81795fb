# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Roll out the scripted expert and write the rollout dataset (architecture.md 3.1)."""

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
from qvla_ros.sim.evaluate import check_horizon, EXECUTE_STEPS, sim_observation
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
    _check_tasks(suite, tasks)
    options = {} if max_steps is None else {'max_steps': max_steps}
    if suite == 'tabletop':
        return TabletopEnv(render=render, **options)
    if suite == 'metaworld':
        if tasks is not None:
            options['tasks'] = tuple(tasks)
        return MetaWorldEnv(render=render, **options)
    raise ValueError(f'unknown suite {suite!r}; expected one of {SUITES}')


def _check_tasks(suite: str, tasks: Optional[Sequence[str]]) -> None:
    """Raise ValueError unless ``tasks`` is None or names Meta-World tasks for that suite."""
    if tasks is None:
        return
    if suite != 'metaworld':
        raise ValueError(f'tasks selects Meta-World tasks; the {suite} suite draws its task '
                         f'from the seed (expected no tasks for {suite})')
    check_tasks(tasks)


class PolicyActor:
    """Act with a policy the way the evaluator does: execute ``execute_steps`` per chunk."""

    def __init__(self, policy, env, text: str, execute_steps: int = EXECUTE_STEPS):
        self.policy, self.env, self.text, self.k = policy, env, text, execute_steps
        self.queue = []

    def act(self, obs: dict) -> np.ndarray:
        """Return the next action (A,) for ``obs``."""
        if not self.queue:
            chunk = self.policy.predict(sim_observation(self.env, obs, self.text))
            self.queue = list(chunk.actions[:self.k])
        return np.asarray(self.queue.pop(0), np.float32)


def collect(suite: str, episodes: int, out: Path, seed: int = 0, progress: bool = False,
            keep: Optional[Callable[[bool], bool]] = None, action_noise: float = 0.0,
            policy: Optional[str] = None, execute_steps: int = EXECUTE_STEPS,
            workers: int = 1, expert_labels: bool = False,
            tasks: Optional[Sequence[str]] = None) -> dict:
    """Record ``episodes`` episodes with seeds seed, seed+1, ...; return a summary.

    The scripted expert acts unless ``policy`` (a model spec or checkpoint folder) is given;
    then that policy's executed actions are recorded (calibration data from FP rollouts), with
    ``execute_steps`` actions of each chunk run before replanning, as the evaluator runs them.
    With ``expert_labels`` the policy still acts, but the dataset records the expert's action
    at every state the policy visits (DAgger): labels that show the policy how to recover from
    its own mistakes. Meta-World's scripted experts are functions of the state; the tabletop
    expert plans its waypoints at reset and follows them from wherever the hand is.
    ``keep(success)`` filters episodes (default: keep all, failures flagged in the index).
    ``action_noise`` > 0 adds Gaussian noise of that standard deviation (action units) to every
    executed dimension but the gripper, while the dataset records the expert's clean action: the
    states drift off the expert's path and the labels show how to recover (DART-style).
    ``workers`` > 1 records contiguous seed ranges in that many processes and appends them to
    ``out`` in seed order. For the expert that is the dataset one process writes, since an
    episode is a function of its seed; a policy's rollouts may differ in float rounding, as
    each worker runs torch on one thread. The progress bar shows the first worker's range.
    ``tasks`` (Meta-World only) draws every episode's task from those MT10 tasks alone, e.g. to
    collect more data on the tasks a policy fails.
    """
    if action_noise < 0:
        raise ValueError(f'action_noise must be >= 0, got {action_noise}')
    if execute_steps < 1:
        raise ValueError(f'execute_steps must be >= 1, got {execute_steps}')
    if workers < 1:
        raise ValueError(f'workers must be >= 1, got {workers}')
    if expert_labels and policy is None:
        raise ValueError("expert_labels relabels a policy's rollouts: give the policy too")
    _check_tasks(suite, tasks)  # before any work
    if workers > 1 and episodes > 1:
        return _collect_parallel(suite, episodes, Path(out), seed, progress, keep,
                                 (action_noise, policy, execute_steps, expert_labels, tasks),
                                 workers)
    model = None
    if policy is not None:  # load torch models before the renderer's EGL context (segfault)
        from qvla_ros.models.checkpoint import load_policy
        model = load_policy(policy)
    env = make_env(suite, tasks=tasks)
    writer = RolloutWriter(out, DatasetInfo(env.action_dim, env.proprio_dim, env.control_hz,
                                            (env.camera,)))
    successes, written = 0, 0
    try:
        for i in tqdm(range(episodes), desc=f'collect {suite}', disable=not progress):
            obs, text = env.reset(seed + i)
            expert = env.expert() if model is None or expert_labels else None
            actor = expert if model is None else PolicyActor(model, env, text, execute_steps)
            relabel = expert is not None and actor is not expert  # DAgger: policy acts
            rng = np.random.default_rng((seed + i, 7))
            images, proprio, actions = [], [], []
            done, success = False, False
            while not done:
                action = actor.act() if model is None else actor.act(obs)
                images.append(obs['image'])
                proprio.append(obs['proprio'])
                actions.append(expert.act() if relabel else action)
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
                               'expert' if expert is not None else 'fp')
            written += 1
    finally:
        env.close()
    return {'episodes': episodes, 'successes': successes, 'written': written}


def _collect_part(job: tuple) -> dict:
    """Worker: record one contiguous seed range into its own dataset folder (keeps all)."""
    suite, count, part, seed, progress, (action_noise, policy, execute_steps, labels,
                                         tasks) = job
    if policy is not None:  # the expert needs no torch: do not import it for nothing
        import torch
        torch.set_num_threads(1)
    return collect(suite, count, part, seed, progress, action_noise=action_noise,
                   policy=policy, execute_steps=execute_steps, expert_labels=labels,
                   tasks=tasks)


def _collect_parallel(suite: str, episodes: int, out: Path, seed: int, progress: bool,
                      keep: Optional[Callable[[bool], bool]], how: tuple, workers: int) -> dict:
    """Record seed ranges in ``workers`` processes, then append them to ``out`` in order."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing
    import tempfile
    out.parent.mkdir(parents=True, exist_ok=True)
    bounds = [episodes * k // workers for k in range(workers + 1)]
    with tempfile.TemporaryDirectory(prefix=f'.{out.name}-parts-', dir=out.parent) as tmp:
        parts = [Path(tmp) / f'{k:02d}' for k in range(workers)]
        jobs = [(suite, hi - lo, part, seed + lo, progress and k == 0, how)
                for k, (lo, hi, part) in enumerate(zip(bounds, bounds[1:], parts)) if hi > lo]
        ctx = multiprocessing.get_context('spawn')  # torch and EGL do not survive fork
        with ProcessPoolExecutor(max_workers=len(jobs), mp_context=ctx) as pool:
            summaries = list(pool.map(_collect_part, jobs))
        written = append_datasets([job[2] for job in jobs], out, keep, progress)
    return {'episodes': episodes, 'successes': sum(s['successes'] for s in summaries),
            'written': written}


def append_datasets(sources, out: Path, keep: Optional[Callable[[bool], bool]] = None,
                    progress: bool = False) -> int:
    """Append every episode of the ``sources`` datasets to ``out`` in order; return how many.

    ``keep(success)`` filters episodes as in ``collect``. The sources must share ``out``'s
    spaces (the writer checks them).
    """
    from qvla_ros.data.rollouts import episodes as index, read_episode, read_info
    writer, written = None, 0
    for src in sources:
        info = read_info(src)
        writer = writer or RolloutWriter(out, info)
        if info != writer.info:
            raise ValueError(f'{src} holds a dataset with {info}, not {writer.info}')
        for entry in tqdm(index(src), desc=f'append {Path(src).name}', disable=not progress):
            if keep is not None and not keep(entry['success']):
                continue
            data = read_episode(src, entry)
            writer.add_episode({c: data[f'image.{c}'] for c in info.cameras}, data['proprio'],
                               data['action'], data['stamp_ns'], entry['instruction'],
                               entry['success'], entry['source'], entry['policy'])
            written += 1
    return written
