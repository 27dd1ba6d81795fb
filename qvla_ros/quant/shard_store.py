# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Finished exact-sensitivity shards on disk, so that an interrupted measurement resumes.

A store is a folder (``qvla sensitivity`` uses ``<out>.shards``): ``manifest.json`` names the
job (a fingerprint of the model, the calibration batch and the settings) and every finished
shard is one safetensors file, written atomically as it completes. A rerun of the same job
reads them back and computes only the others; a store of another job is refused, since mixing
its shards in would silently change the result. One writer at a time holds ``.lock``.
"""

from dataclasses import asdict, fields
import hashlib
import json
from pathlib import Path
import shutil
from typing import Dict, Optional

from safetensors.torch import save_file
import torch

from qvla_ros.quant.policy import Batch
from qvla_ros.quant.sensitivity import SensitivityConfig, Shard
from qvla_ros.storage.atomic import write_file, write_json
from qvla_ros.storage.errors import ArtifactError, read_json_object, read_safetensors
from qvla_ros.storage.lock import FileLock

FORMAT, VERSION = 'qvla-sensitivity-shards', 1
SAMPLES_PER_TENSOR = 4096  # values of each parameter that enter the model fingerprint
_NOT_RESULTS = ('progress',)  # settings that do not change a single score


def fingerprint(policy, batch: Batch, cfg: SensitivityConfig) -> str:
    """Return 16 hex digits naming the job: model parameters, calibration batch, settings.

    Each parameter contributes its name, shape, dtype and ``SAMPLES_PER_TENSOR`` evenly spaced
    values, which tells checkpoints apart without reading 14 GB of a 7B model.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(policy.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // SAMPLES_PER_TENSOR)
        h.update(f'{name}{tuple(tensor.shape)}{tensor.dtype}'.encode())
        h.update(flat[::step].float().cpu().numpy().tobytes())
    for key in sorted(batch):
        h.update(key.encode())
        h.update(batch[key].detach().contiguous().cpu().numpy().tobytes())
    settings = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _NOT_RESULTS}
    h.update(json.dumps(settings, default=_jsonable, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _jsonable(value):
    return asdict(value) if hasattr(value, '__dataclass_fields__') else str(value)


def _file_name(shard: Shard) -> str:
    key = json.dumps(asdict(shard), sort_keys=True).encode()
    return f'shard-{hashlib.sha1(key).hexdigest()[:20]}.safetensors'


class ShardStore:
    """The finished shards of one job in ``folder``; use it as a context manager."""

    def __init__(self, folder: Path, job: str):
        self.folder, self.job = Path(folder), job
        self._lock = FileLock(self.folder / '.lock', f'measuring sensitivity into {folder}')
        self._done: Optional[Dict[Shard, torch.Tensor]] = None

    def __enter__(self) -> 'ShardStore':
        """Take the store's lock, and claim the folder for this job (or check its claim)."""
        if self._lock.held:  # entered by ``open`` already
            return self
        self._lock.acquire()
        try:
            manifest = self.folder / 'manifest.json'
            if manifest.is_file():
                data = read_json_object(manifest, 'a sensitivity shard manifest')
                if (data.get('format'), data.get('version')) != (FORMAT, VERSION) \
                        or data.get('job') != self.job:
                    raise ArtifactError(
                        f'{self.folder} holds shards of another measurement (job '
                        f'{data.get("job")!r}, this one is {self.job!r}); expected the same '
                        'model, data and settings to resume. Remove it, or pass --overwrite')
            else:
                write_json(manifest, {'format': FORMAT, 'version': VERSION, 'job': self.job})
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        """Release the lock; the shards stay for the next run."""
        self._lock.release()

    @classmethod
    def open(cls, folder: Path, job: str, replace: bool = False) -> 'ShardStore':
        """Return the entered store of ``job``; ``replace`` clears another job's shards."""
        try:
            return cls(folder, job).__enter__()
        except ArtifactError:
            if not replace or not Path(folder).is_dir():
                raise
        shutil.rmtree(folder)
        return cls(folder, job).__enter__()

    def done(self) -> Dict[Shard, torch.Tensor]:
        """Return every shard finished so far (read once, then kept up to date)."""
        if self._done is None:
            self._done = {}
            for path in sorted(self.folder.glob('shard-*.safetensors')):
                tensors, meta = read_safetensors(path, with_metadata=True,
                                                 what='a sensitivity shard')
                try:
                    info = json.loads(meta['shard'])
                    shard = Shard(**{**info, 'rows': tuple(info['rows'])})
                    scores = tensors['scores']
                except (KeyError, TypeError, ValueError):
                    raise ArtifactError(f'{path} is not a sensitivity shard; remove it') from None
                if path.name != _file_name(shard) or scores.shape != shard.row_index().shape:
                    raise ArtifactError(f'{path} does not match the shard it names; remove it')
                self._done[shard] = scores
        return dict(self._done)

    def put(self, shard: Shard, scores: torch.Tensor) -> None:
        """Write one finished shard atomically."""
        tensors = {'scores': scores.detach().float().contiguous().cpu()}
        meta = {'shard': json.dumps(asdict(shard))}
        write_file(self.folder / _file_name(shard),
                   lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        if self._done is not None:
            self._done[shard] = tensors['scores']

    def remove(self) -> None:
        """Delete the folder (after the merged result is safely written)."""
        shutil.rmtree(self.folder, ignore_errors=True)
