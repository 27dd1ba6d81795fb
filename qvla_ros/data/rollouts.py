# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The rollout dataset (docs/formats.md).

Written by the calibration node, the bag importer and the sim; read by calibration and
training.

Layout: ``dataset.json`` (format, version, spaces, episode index) and
``episodes/NNNNNN.safetensors`` with ``image.<camera>`` uint8 (T, H, W, 3), ``proprio``
float32 (T, P), ``action`` float32 (T, A), ``stamp_ns`` int64 (T,). An episode is written to a
temporary name and renamed before the index is rewritten the same way, so a crash never
leaves a half episode in the index. A writer holds the dataset's lock (``.lock``) for its
lifetime, so a second writer is refused with a message instead of losing episodes, and it
re-reads the index before each append. Proprio and actions must be finite: importers drop
non-finite steps before they get here (``finite_steps``).
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
from safetensors.numpy import save_file

from qvla_ros.storage.atomic import write_file, write_json
from qvla_ros.storage.errors import ArtifactError, read_json_object, read_safetensors
from qvla_ros.storage.lock import FileLock

FORMAT, VERSION = 'qvla-rollouts', 1
SOURCES = ('ros', 'rosbag', 'sim')


@dataclass(frozen=True)
class DatasetInfo:
    """Spaces shared by every episode of a dataset."""

    action_dim: int
    proprio_dim: int
    control_hz: float
    cameras: Tuple[str, ...]
    action_space: str = 'ee_delta'

    def __post_init__(self):
        object.__setattr__(self, 'cameras', tuple(self.cameras))
        if self.action_dim < 1 or self.proprio_dim < 0 or self.control_hz <= 0:
            raise ValueError(f'invalid dataset spaces: {self}')
        if not self.cameras:
            raise ValueError('a rollout dataset needs at least one camera')


def _index(root: Path) -> dict:
    path = root / 'dataset.json'
    data = read_json_object(path, f'a {FORMAT} dataset index')
    if data.get('format') != FORMAT or data.get('version') != VERSION:
        raise ArtifactError(f'{path}: expected format {FORMAT!r} version {VERSION}, got '
                            f'{data.get("format")!r} version {data.get("version")!r}')
    for key in ('action_space', 'action_dim', 'proprio_dim', 'control_hz', 'cameras',
                'episodes'):
        if key not in data:
            raise ArtifactError(f'{path}: field {key!r} is missing')
    if not isinstance(data['episodes'], list):
        raise ArtifactError(f"{path}: field 'episodes' must be a list")
    return data


def finite_steps(*arrays: np.ndarray) -> np.ndarray:
    """Return a bool (T,) mask of the steps whose values in every (T, ...) array are finite."""
    keep = np.ones(len(arrays[0]), bool)
    for a in arrays:
        keep &= np.isfinite(np.asarray(a, np.float64).reshape(len(a), -1)).all(axis=1)
    return keep


def read_info(root: Path) -> DatasetInfo:
    """Return the spaces of the dataset at ``root``."""
    d = _index(Path(root))
    try:
        return DatasetInfo(int(d['action_dim']), int(d['proprio_dim']),
                           float(d['control_hz']), tuple(d['cameras']), str(d['action_space']))
    except (TypeError, ValueError) as err:
        raise ArtifactError(f'{Path(root) / "dataset.json"}: invalid spaces ({err})') from None


class RolloutWriter:
    """Append episodes to a dataset folder, atomically, as its only writer.

    The lock is taken here and held until ``close`` (or the end of a ``with`` block); a
    dataset another process is writing raises LockedError naming that process.
    """

    def __init__(self, root: Path, info: DatasetInfo):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(self.root / '.lock', f'writing the dataset {self.root}')
        self._lock.acquire()
        try:
            (self.root / 'episodes').mkdir(exist_ok=True)
            if (self.root / 'dataset.json').exists():
                existing = read_info(self.root)
                if existing != info:
                    raise ValueError(f'{self.root} holds a dataset with {existing}, not {info}')
            else:
                write_json(self.root / 'dataset.json', {
                    'format': FORMAT, 'version': VERSION, **asdict(info),
                    'cameras': list(info.cameras), 'episodes': []})
        except BaseException:
            self._lock.release()
            raise
        self.info = info

    def __enter__(self) -> 'RolloutWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()

    def close(self) -> None:
        """Release the dataset's lock (idempotent); the writer cannot append afterwards."""
        lock = getattr(self, '_lock', None)
        if lock is not None:
            lock.release()

    def seeds(self) -> set:
        """Return the seeds of the episodes already in the dataset (those recorded with one)."""
        return {e['seed'] for e in _index(self.root)['episodes'] if e.get('seed') is not None}

    def add_episode(self, images: Dict[str, np.ndarray], proprio: np.ndarray,
                    action: np.ndarray, stamp_ns: np.ndarray, instruction: str,
                    success: Optional[bool], source: str, policy: str,
                    seed: Optional[int] = None) -> str:
        """Validate and write one episode; return its file name relative to the root.

        ``seed`` (simulated episodes) lets an interrupted collection resume without
        duplicating episodes.
        """
        if not self._lock.held:
            raise ValueError(f'the writer of {self.root} is closed')
        t = len(stamp_ns)
        self._check(images, proprio, action, stamp_ns, t, source)
        data = _index(self.root)  # re-read: the file on disk is the truth
        name = f'episodes/{len(data["episodes"]):06d}.safetensors'
        tensors = {f'image.{c}': np.ascontiguousarray(images[c]) for c in self.info.cameras}
        tensors.update(proprio=proprio.astype(np.float32), action=action.astype(np.float32),
                       stamp_ns=stamp_ns.astype(np.int64))
        write_file(self.root / name, lambda tmp: save_file(tensors, str(tmp)))
        entry = {'file': name, 'instruction': instruction, 'num_steps': t,
                 'success': success, 'source': source, 'policy': policy}
        if seed is not None:
            entry['seed'] = int(seed)
        data['episodes'].append(entry)
        write_json(self.root / 'dataset.json', data)
        return name

    def _check(self, images, proprio, action, stamp_ns, t, source):
        if t < 1:
            raise ValueError('an episode needs at least one step')
        if source not in SOURCES:
            raise ValueError(f'source must be one of {SOURCES}, got {source!r}')
        if set(images) != set(self.info.cameras):
            raise ValueError(f'images must have cameras {list(self.info.cameras)}, got '
                             f'{sorted(images)}')
        for cam, img in images.items():
            if img.dtype != np.uint8 or img.ndim != 4 or img.shape[0] != t or img.shape[3] != 3:
                raise ValueError(f'image.{cam} must be uint8 ({t}, H, W, 3), got {img.dtype} '
                                 f'{img.shape}')
        if proprio.shape != (t, self.info.proprio_dim):
            raise ValueError(f'proprio must be ({t}, {self.info.proprio_dim}), got '
                             f'{proprio.shape}')
        if action.shape != (t, self.info.action_dim):
            raise ValueError(f'action must be ({t}, {self.info.action_dim}), got {action.shape}')
        if np.any(np.diff(stamp_ns.astype(np.int64)) < 0):
            raise ValueError('stamp_ns must be non-decreasing')
        if not finite_steps(proprio, action).all():
            raise ValueError('proprio and action must be finite (drop non-finite steps before '
                             'writing them)')


def episodes(root: Path) -> List[dict]:
    """Return the episode index entries of the dataset at ``root``."""
    return list(_index(Path(root))['episodes'])


def read_episode(root: Path, entry: dict) -> Dict[str, np.ndarray]:
    """Return the tensors of one episode, checking them against the index.

    A missing, truncated or inconsistent file, or one with non-finite proprio or actions, is an
    ArtifactError naming it.
    """
    path = Path(root) / str(entry.get('file', ''))
    data = read_safetensors(path, framework='numpy')
    t = entry.get('num_steps')
    for key in ('proprio', 'action', 'stamp_ns'):
        if key not in data or data[key].shape[0] != t:
            raise ArtifactError(f'{path}: {key} missing or not {t} steps long; the episode '
                                'file does not match dataset.json')
    if not finite_steps(data['proprio'], data['action']).all():
        raise ArtifactError(f'{path}: actions or proprio are not finite; expected finite '
                            'steps (importers drop non-finite steps: re-import the source)')
    return data


def iter_steps(root: Path, stride: int = 1) -> Iterator[Tuple[dict, int, Dict[str, np.ndarray]]]:
    """Yield (episode entry, step index, episode tensors) every ``stride`` steps."""
    for entry in episodes(root):
        data = read_episode(root, entry)
        for i in range(0, entry['num_steps'], stride):
            yield entry, i, data


def spread_steps(root: Path, count: int, stride: int = 1
                 ) -> Iterator[Tuple[dict, int, Dict[str, np.ndarray]]]:
    """Yield ``count`` (episode entry, step index, episode tensors), spread over the dataset.

    Of the steps every ``stride`` of every episode (L candidates, in dataset order), take
    those at positions floor((j + 1/2) L / count), j < count, so a small calibration set covers
    the whole dataset (every task and source) instead of its first episodes. All L when
    ``count`` >= L. Deterministic; each episode is read once.
    """
    if count < 1 or stride < 1:
        raise ValueError(f'count and stride must be >= 1, got {count} and {stride}')
    entries = episodes(root)
    steps = [(e, i) for e, entry in enumerate(entries)
             for i in range(0, entry['num_steps'], stride)]
    if count < len(steps):
        steps = [steps[int((j + 0.5) * len(steps) / count)] for j in range(count)]
    loaded, data = -1, {}
    for e, i in steps:
        if e != loaded:
            loaded, data = e, read_episode(root, entries[e])
        yield entries[e], i, data


def append_datasets(sources, out: Path, progress: bool = False) -> int:
    """Append every episode of the ``sources`` datasets to ``out`` in order; return how many.

    The sources must share ``out``'s spaces (the writer checks them); seeds are kept.
    """
    from tqdm.auto import tqdm
    writer, written = None, 0
    try:
        for src in sources:
            info = read_info(src)
            writer = writer or RolloutWriter(out, info)
            if info != writer.info:
                raise ValueError(f'{src} holds a dataset with {info}, not {writer.info}')
            for entry in tqdm(episodes(src), desc=f'append {Path(src).name}',
                              disable=not progress):
                data = read_episode(src, entry)
                writer.add_episode({c: data[f'image.{c}'] for c in info.cameras},
                                   data['proprio'], data['action'], data['stamp_ns'],
                                   entry['instruction'], entry['success'], entry['source'],
                                   entry['policy'], seed=entry.get('seed'))
                written += 1
    finally:
        if writer is not None:
            writer.close()
    return written
