# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Roll out the scripted expert and write the rollout dataset (docs/formats.md)."""

from dataclasses import asdict, dataclass
import json
from pathlib import Path
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
from qvla_ros.models.checkpoint import load_policy
from qvla_ros.runtime.chunking import ActionSchedule, checkpoint_schedule
from qvla_ros.sim.metaworld_suite import MetaWorldEnv
from qvla_ros.sim.suites import check_suite_tasks, make_env, sim_observation, SUITES
from qvla_ros.sim.tabletop import TabletopEnv
from qvla_ros.storage.atomic import write_file
from qvla_ros.storage.errors import ArtifactError, read_safetensors


class PolicyActor:
    """Act with a policy the way the evaluator and the node do: through its ActionSchedule.

    ``execute_steps`` None runs the schedule the checkpoint records.
    """

    def __init__(self, policy, env, text: str, execute_steps: Optional[int] = None):
        self.policy, self.env, self.text = policy, env, text
        self.schedule = ActionSchedule(checkpoint_schedule(policy, execute_steps=execute_steps))
        self.t_ns, self.dt_ns = 0, 0

    def act(self, obs: dict) -> np.ndarray:
        """Return the next action (A,) for ``obs``."""
        if self.schedule.needs_plan(self.t_ns):
            chunk = self.policy.predict(sim_observation(self.env, obs, self.text))
            self.schedule.add(chunk, self.t_ns)
            self.dt_ns = int(chunk.dt * 1e9)
        action = self.schedule.action_at(self.t_ns)
        self.t_ns += self.dt_ns  # simulated time, in the chunk's steps
        return np.asarray(action, np.float32)


@dataclass(frozen=True)
class CollectSpec:
    """How episodes are recorded (everything but which seeds): the same in every worker."""

    suite: str
    action_noise: float = 0.0
    policy: Optional[str] = None
    execute_steps: Optional[int] = None  # None: the schedule the checkpoint records
    expert_labels: bool = False
    tasks: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        if self.suite not in SUITES:
            raise ValueError(f'unknown suite {self.suite!r}; expected one of {SUITES}')
        if self.action_noise < 0:
            raise ValueError(f'action_noise must be >= 0, got {self.action_noise}')
        if self.execute_steps is not None and self.execute_steps < 1:
            raise ValueError(f'execute_steps must be >= 1, got {self.execute_steps}')
        if self.expert_labels and self.policy is None:
            raise ValueError("expert_labels relabels a policy's rollouts: give the policy too")
        check_suite_tasks(self.suite, self.tasks)  # before any work

    def key(self) -> str:
        """Return a text that differs whenever recorded episodes would differ."""
        return json.dumps(asdict(self), sort_keys=True)


def collect(suite: str, episodes: int, out: Path, seed: int = 0, progress: bool = False,
            keep: Optional[Callable[[bool], bool]] = None, action_noise: float = 0.0,
            policy: Optional[str] = None, execute_steps: Optional[int] = None,
            workers: int = 1, expert_labels: bool = False,
            tasks: Optional[Sequence[str]] = None) -> dict:
    """Record the episodes of seeds seed .. seed + episodes - 1 into ``out``; return a summary.

    The scripted expert acts unless ``policy`` (a model spec or checkpoint folder) is given;
    then that policy's executed actions are recorded (calibration data from FP rollouts), run
    through the schedule its checkpoint records (``execute_steps`` overrides it), as the
    evaluator and the node run it.
    With ``expert_labels`` the policy still acts, but the dataset records the expert's action
    at every state the policy visits (DAgger): labels that show the policy how to recover from
    its own mistakes. Meta-World's scripted experts are functions of the state; the tabletop
    expert plans its waypoints at reset and follows them from wherever the hand is.
    ``keep(success)`` filters episodes (default: keep all, failures flagged in the index).
    ``action_noise`` > 0 adds Gaussian noise of that standard deviation (action units) to every
    executed dimension but the gripper, while the dataset records the expert's clean action: the
    states drift off the expert's path and the labels show how to recover (DART-style).
    ``tasks`` (Meta-World only) draws every episode's task from those MT10 tasks alone.

    Every episode lands in the dataset (with its seed) as soon as it is finished, and seeds
    already in ``out`` are skipped, so rerunning a killed collection resumes it. ``workers``
    > 1 records the seeds in that many processes, interleaved, and the episodes are appended
    in seed order: the dataset one process writes, since an episode is a function of its
    seed (a policy's rollouts may differ in float rounding, as each worker runs torch on one
    thread). The writer holds the dataset's lock throughout: a second collection into the
    same folder is refused.
    """
    spec = CollectSpec(suite, action_noise, policy, execute_steps, expert_labels,
                       None if tasks is None else tuple(tasks))
    if workers < 1:
        raise ValueError(f'workers must be >= 1, got {workers}')
    with _open_writer(spec, Path(out)) as writer:
        inbox = Inbox(Path(out), spec)
        present = writer.seeds()
        inbox.drain(writer, keep, present)  # episodes a killed run finished but did not file
        todo = [s for s in range(seed, seed + episodes) if s not in present]
        if workers > 1 and len(todo) > 1:
            counts = _collect_parallel(spec, todo, inbox, writer, keep, progress, workers)
        else:
            counts = _collect_here(spec, todo, writer, keep, progress)
        inbox.remove()
    return {'episodes': episodes, 'resumed': episodes - len(todo), **counts}


def _open_writer(spec: CollectSpec, out: Path) -> RolloutWriter:
    """Open (and lock) the dataset with the spaces of the suite's environment class."""
    env = {'tabletop': TabletopEnv, 'metaworld': MetaWorldEnv}[spec.suite]
    return RolloutWriter(out, DatasetInfo(env.action_dim, env.proprio_dim, env.control_hz,
                                          env.cameras))


def _collect_here(spec: CollectSpec, seeds: Sequence[int], writer: RolloutWriter,
                  keep, progress: bool) -> dict:
    """Record ``seeds`` in this process, filing each episode as it ends."""
    successes, written = 0, 0
    recorder = Recorder(spec)
    try:
        for s in tqdm(seeds, desc=f'collect {spec.suite}', disable=not progress):
            episode = recorder.record(s)
            successes += int(episode.success)
            written += episode.file(writer, keep)
    finally:
        recorder.close()
    return {'successes': successes, 'written': written}


class Recorder:
    """An environment (and policy) that records episodes by seed."""

    def __init__(self, spec: CollectSpec):
        self.spec = spec
        self.model = None
        if spec.policy is not None:
            self.model = load_policy(spec.policy)
        self.env = make_env(spec.suite, tasks=spec.tasks)

    def close(self) -> None:
        """Close the environment."""
        self.env.close()

    def record(self, seed: int) -> 'Episode':
        """Run the episode of ``seed`` and return what the dataset records of it."""
        env, model, spec = self.env, self.model, self.spec
        obs, text = env.reset(seed)
        expert = env.expert() if model is None or spec.expert_labels else None
        actor = expert if model is None else PolicyActor(model, env, text, spec.execute_steps)
        relabel = expert is not None and actor is not expert  # DAgger: policy acts
        rng = np.random.default_rng((seed, 7))
        images, proprio, actions = [], [], []
        done, success = False, False
        while not done:
            action = actor.act() if model is None else actor.act(obs)
            images.append(obs['images'])
            proprio.append(obs['proprio'])
            actions.append(expert.act() if relabel else action)
            executed = action.copy()
            if spec.action_noise > 0:
                executed[:-1] += rng.normal(0.0, spec.action_noise, executed.size - 1)
            obs, success, done = env.step(executed)
        t = len(actions)
        return Episode(seed, text, bool(success),
                       'expert' if expert is not None else 'fp',
                       {c: np.stack([im[c] for im in images]) for c in env.cameras},
                       np.stack(proprio), np.stack(actions),
                       np.arange(t, dtype=np.int64) * int(1e9 / env.control_hz))


@dataclass
class Episode:
    """One recorded episode, before it is filed into a dataset."""

    seed: int
    instruction: str
    success: bool
    policy: str
    images: Dict[str, np.ndarray]
    proprio: np.ndarray
    action: np.ndarray
    stamp_ns: np.ndarray

    def file(self, writer: RolloutWriter, keep) -> int:
        """Append to ``writer`` unless ``keep`` rejects it; return 1 if written, else 0."""
        if keep is not None and not keep(self.success):
            return 0
        writer.add_episode(self.images, self.proprio, self.action, self.stamp_ns,
                           self.instruction, self.success, 'sim', self.policy, seed=self.seed)
        return 1


class Inbox:
    """Finished episodes that worker processes hand to the writer: ``<out>/.incoming/``.

    Each episode is a safetensors file whose metadata says how it was recorded; a file is
    complete once it has its final name (atomic write), so the writer files only whole ones.
    Episodes recorded with another spec (a different command) are discarded, not filed.
    """

    def __init__(self, out: Path, spec: CollectSpec):
        self.folder = Path(out) / '.incoming'
        self.spec_key = spec.key()

    def path(self, seed: int) -> Path:
        """Return where the episode of ``seed`` is handed over."""
        return self.folder / f'{seed:010d}.safetensors'

    def put(self, episode: Episode) -> None:
        """Hand over ``episode`` (worker side)."""
        tensors = {f'image.{c}': np.ascontiguousarray(v) for c, v in episode.images.items()}
        tensors.update(proprio=episode.proprio.astype(np.float32),
                       action=episode.action.astype(np.float32), stamp_ns=episode.stamp_ns)
        meta = {'spec': self.spec_key, 'seed': str(episode.seed),
                'instruction': episode.instruction, 'success': str(episode.success),
                'policy': episode.policy}
        write_file(self.path(episode.seed), lambda tmp: save_file(tensors, str(tmp), meta))

    def take(self, seed: int) -> Optional[Episode]:
        """Return the handed-over episode of ``seed`` and remove its file, or None."""
        path = self.path(seed)
        if not path.is_file():
            return None
        try:
            tensors, meta = read_safetensors(path, 'numpy', with_metadata=True)
        except ArtifactError:
            meta = {}
        path.unlink()
        if meta.get('spec') != self.spec_key:
            return None
        images = {k[len('image.'):]: v for k, v in tensors.items() if k.startswith('image.')}
        return Episode(seed, meta['instruction'], meta['success'] == 'True', meta['policy'],
                       images, tensors['proprio'], tensors['action'], tensors['stamp_ns'])

    def seeds(self) -> List[int]:
        """Return the seeds waiting in the inbox, in order."""
        if not self.folder.is_dir():
            return []
        return sorted(int(p.name.split('.')[0]) for p in self.folder.glob('*.safetensors'))

    def drain(self, writer: RolloutWriter, keep, present: set) -> int:
        """File every complete episode waiting, in seed order, skipping seeds present."""
        written = 0
        for s in self.seeds():
            episode = self.take(s)
            if episode is not None and s not in present:
                written += episode.file(writer, keep)
                present.add(s)
        return written

    def remove(self) -> None:
        """Delete the inbox and anything left in it."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _record_into_inbox(job: tuple) -> dict:
    """Worker: record ``seeds`` one by one into the inbox; return the successes."""
    spec, seeds, out = job
    if spec.policy is not None:  # the expert needs no torch: do not import it for nothing
        import torch
        torch.set_num_threads(1)
    inbox, recorder, successes = Inbox(out, spec), Recorder(spec), 0
    try:
        for s in seeds:
            episode = recorder.record(s)
            successes += int(episode.success)
            inbox.put(episode)
    finally:
        recorder.close()
    return {'successes': successes}


def _collect_parallel(spec: CollectSpec, seeds: List[int], inbox: Inbox,
                      writer: RolloutWriter, keep, progress: bool, workers: int) -> dict:
    """Record ``seeds`` interleaved over ``workers`` processes; file them in seed order."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    import multiprocessing
    inbox.folder.mkdir(exist_ok=True)
    jobs = [(spec, seeds[k::workers], inbox.folder.parent) for k in range(workers)
            if seeds[k::workers]]
    ctx = multiprocessing.get_context('spawn')  # torch and EGL do not survive fork
    written, nxt = 0, 0
    bar = tqdm(total=len(seeds), desc=f'collect {spec.suite}', disable=not progress)
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=ctx) as pool:
        pending = {pool.submit(_record_into_inbox, job) for job in jobs}
        futures = list(pending)
        while nxt < len(seeds):
            while nxt < len(seeds) and inbox.path(seeds[nxt]).is_file():
                episode = inbox.take(seeds[nxt])
                written += episode.file(writer, keep) if episode is not None else 0
                nxt += 1
                bar.update(1)
            if not pending:
                break
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # a worker's error stops the collection here
    bar.close()
    successes = sum(f.result()['successes'] for f in futures)
    return {'successes': successes, 'written': written}
