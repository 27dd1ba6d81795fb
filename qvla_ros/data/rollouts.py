# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The rollout dataset (architecture.md 3.1).

Written by the calibration node, the bag importer and the sim; read by calibration and
training.

Layout: ``dataset.json`` (format, version, spaces, episode index) and
``episodes/NNNNNN.safetensors`` with ``image.<camera>`` uint8 (T, H, W, 3), ``proprio``
float32 (T, P), ``action`` float32 (T, A), ``stamp_ns`` int64 (T,). An episode is written to a
temporary name and renamed before the index is rewritten the same way, so a crash never
leaves a half episode in the index.
"""

from dataclasses import asdict, dataclass
import json
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
from safetensors.numpy import load_file, save_file

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


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(json.dumps(data, indent=1) + '\n')
    os.replace(tmp, path)


def _index(root: Path) -> dict:
    path = root / 'dataset.json'
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist; expected a {FORMAT} dataset folder')
    data = json.loads(path.read_text())
    if data.get('format') != FORMAT or data.get('version') != VERSION:
        raise ValueError(f'{path}: expected format {FORMAT!r} version {VERSION}, got '
                         f'{data.get("format")!r} version {data.get("version")!r}')
    for key in ('action_space', 'action_dim', 'proprio_dim', 'control_hz', 'cameras',
                'episodes'):
        if key not in data:
            raise ValueError(f'{path}: field {key!r} is missing')
    return data


def read_info(root: Path) -> DatasetInfo:
    """Return the spaces of the dataset at ``root``."""
    d = _index(Path(root))
    return DatasetInfo(int(d['action_dim']), int(d['proprio_dim']), float(d['control_hz']),
                       tuple(d['cameras']), d['action_space'])


class RolloutWriter:
    """Append episodes to a dataset folder, atomically."""

    def __init__(self, root: Path, info: DatasetInfo):
        self.root = Path(root)
        (self.root / 'episodes').mkdir(parents=True, exist_ok=True)
        if (self.root / 'dataset.json').exists():
            existing = read_info(self.root)
            if existing != info:
                raise ValueError(f'{self.root} holds a dataset with {existing}, not {info}')
            self._data = _index(self.root)
        else:
            self._data = {'format': FORMAT, 'version': VERSION, **asdict(info),
                          'cameras': list(info.cameras), 'episodes': []}
            _write_json(self.root / 'dataset.json', self._data)
        self.info = info

    def add_episode(self, images: Dict[str, np.ndarray], proprio: np.ndarray,
                    action: np.ndarray, stamp_ns: np.ndarray, instruction: str,
                    success: Optional[bool], source: str, policy: str) -> str:
        """Validate and write one episode; return its file name relative to the root."""
        t = len(stamp_ns)
        self._check(images, proprio, action, stamp_ns, t, source)
        name = f'episodes/{len(self._data["episodes"]):06d}.safetensors'
        tensors = {f'image.{c}': np.ascontiguousarray(images[c]) for c in self.info.cameras}
        tensors.update(proprio=proprio.astype(np.float32), action=action.astype(np.float32),
                       stamp_ns=stamp_ns.astype(np.int64))
        tmp = self.root / f'{name}.tmp'
        save_file(tensors, str(tmp))
        os.replace(tmp, self.root / name)
        self._data['episodes'].append({'file': name, 'instruction': instruction,
                                       'num_steps': t, 'success': success, 'source': source,
                                       'policy': policy})
        _write_json(self.root / 'dataset.json', self._data)
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


def episodes(root: Path) -> List[dict]:
    """Return the episode index entries of the dataset at ``root``."""
    return list(_index(Path(root))['episodes'])


def read_episode(root: Path, entry: dict) -> Dict[str, np.ndarray]:
    """Return the tensors of one episode, checking them against the index."""
    path = Path(root) / entry['file']
    data = load_file(str(path))
    t = entry['num_steps']
    for key in ('proprio', 'action', 'stamp_ns'):
        if key not in data or data[key].shape[0] != t:
            raise ValueError(f'{path}: {key} missing or not {t} steps long')
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
    loaded, data = None, None
    for e, i in steps:
        if e != loaded:
            loaded, data = e, read_episode(root, entries[e])
        yield entries[e], i, data
