# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Sensitivity files and quant plans on disk (architecture.md 3.2 and 3.3), validated on load.

Every artifact carries ``format`` and ``version``; a wrong, missing or mismatched field is a
ValueError naming the field and what was expected. Nothing is filled in silently. Files are
written to a temporary name and renamed.
"""

from dataclasses import dataclass, field
import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from safetensors import safe_open
from safetensors.torch import save_file
import torch

from qvla_ros.quant.spec import check_bits, QuantSpec

SENS_FORMAT, PLAN_FORMAT, VERSION = 'qvla-sensitivity', 'qvla-plan', 1
ACTION_DEFINITION = ('squared L2 over the whole normalized action chunk (B, H, A), '
                     'mean over calibration samples')


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp')
    write(tmp)
    os.replace(tmp, path)


def _need(cond: bool, what: str, path) -> None:
    if not cond:
        raise ValueError(f'{path}: {what}')


@dataclass
class SensitivityFile:
    """Per-layer scores (len(bits), out_features) plus the metadata that explains them."""

    bits: Tuple[int, ...]
    method: str
    n_samples: int
    scores: Dict[str, torch.Tensor]
    in_features: Dict[str, int]
    extra: dict = field(default_factory=dict)

    def validate(self, where='sensitivity') -> None:
        """Raise ValueError if shapes, bits or layer sets disagree."""
        for b in self.bits:
            check_bits(b)
        _need(set(self.scores) == set(self.in_features),
              f'layers with scores {sorted(self.scores)} differ from layers with in_features '
              f'{sorted(self.in_features)}', where)
        for name, s in self.scores.items():
            _need(s.ndim == 2 and s.shape[0] == len(self.bits),
                  f'scores of {name} must be ({len(self.bits)}, out_features), got '
                  f'{tuple(s.shape)}', where)
            _need(bool(torch.isfinite(s).all()) and bool((s >= 0).all()),
                  f'scores of {name} must be finite and >= 0', where)

    def save(self, path: Path) -> None:
        """Write one safetensors file: a tensor per layer and JSON metadata."""
        self.validate()
        meta = {'format': SENS_FORMAT, 'version': VERSION, 'bits': list(self.bits),
                'method': self.method, 'n_samples': self.n_samples,
                'action_definition': ACTION_DEFINITION, 'in_features': self.in_features,
                'extra': self.extra}
        tensors = {k: v.detach().float().contiguous() for k, v in self.scores.items()}
        _atomic(path, lambda tmp: save_file(tensors, str(tmp),
                                            metadata={'qvla': json.dumps(meta)}))

    @classmethod
    def load(cls, path: Path) -> 'SensitivityFile':
        """Read and validate a file written by :meth:`save`."""
        meta, tensors = _read_safetensors(path, SENS_FORMAT)
        for key in ('bits', 'method', 'n_samples', 'in_features'):
            _need(key in meta, f'metadata field {key!r} is missing', path)
        out = cls(tuple(meta['bits']), meta['method'], int(meta['n_samples']), tensors,
                  {k: int(v) for k, v in meta['in_features'].items()}, meta.get('extra', {}))
        out.validate(path)
        return out


def _read_safetensors(path: Path, fmt: str):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist; expected a {fmt} safetensors file')
    with safe_open(str(path), framework='pt') as handle:
        raw = (handle.metadata() or {}).get('qvla')
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    _need(raw is not None, f'no qvla metadata; expected a {fmt} file', path)
    meta = json.loads(raw)
    _need(meta.get('format') == fmt, f'format must be {fmt!r}, got {meta.get("format")!r}', path)
    _need(meta.get('version') == VERSION,
          f'version must be {VERSION}, got {meta.get("version")!r}', path)
    return meta, tensors


@dataclass
class QuantPlan:
    """Bits per output row of every quantized layer, with the quantizer spec and budget."""

    spec: QuantSpec
    method: str
    bits: Dict[str, torch.Tensor]          # layer -> uint8 (out_features,), 0 = pruned
    in_features: Dict[str, int]
    target_bits: float
    budget_bytes: Optional[int] = None
    candidates: Tuple[int, ...] = (0, 2, 4, 8, 16)
    extra: dict = field(default_factory=dict)

    def param_count(self) -> int:
        """Return the number of weights the plan covers."""
        return sum(b.numel() * self.in_features[k] for k, b in self.bits.items())

    def achieved_bits(self) -> float:
        """Return the achieved average bits per parameter."""
        total = sum(float((b.double() * self.in_features[k]).sum()) for k, b in self.bits.items())
        return total / max(self.param_count(), 1)

    def histogram(self, name: Optional[str] = None) -> Dict[int, int]:
        """Return {bits: rows} for one layer, or over all layers."""
        rows = torch.cat([self.bits[name]] if name else list(self.bits.values()))
        return {int(b): int((rows == b).sum()) for b in sorted(self.candidates)}

    @property
    def plan_id(self) -> str:
        """A short content hash that identifies the plan (used in ROS status)."""
        import hashlib
        h = hashlib.sha256(json.dumps(self.summary(), sort_keys=True).encode())
        for k in sorted(self.bits):
            h.update(k.encode())
            h.update(self.bits[k].numpy().tobytes())
        return h.hexdigest()[:12]

    def summary(self) -> dict:
        """Return the JSON-ready plan.json content."""
        return {'format': PLAN_FORMAT, 'version': VERSION, 'method': self.method,
                'spec': self.spec.to_dict(), 'target_bits_per_param': self.target_bits,
                'achieved_bits_per_param': self.achieved_bits(),
                'budget_bytes': self.budget_bytes, 'candidates': list(self.candidates),
                'histogram': {str(k): v for k, v in self.histogram().items()},
                'layers': {k: {'out_features': int(b.numel()),
                               'in_features': self.in_features[k],
                               'histogram': {str(x): y for x, y in self.histogram(k).items()}}
                           for k, b in sorted(self.bits.items())},
                'extra': self.extra}

    def save(self, directory: Path) -> None:
        """Write ``plan.json`` and ``plan.safetensors`` into ``directory``."""
        directory = Path(directory)
        tensors = {k: v.to(torch.uint8).contiguous() for k, v in self.bits.items()}
        _atomic(directory / 'plan.safetensors',
                lambda tmp: save_file(tensors, str(tmp), metadata={'qvla': json.dumps(
                    {'format': PLAN_FORMAT, 'version': VERSION})}))
        text = json.dumps(self.summary(), indent=1, sort_keys=True) + '\n'
        _atomic(directory / 'plan.json', lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, directory: Path) -> 'QuantPlan':
        """Read and validate a plan directory written by :meth:`save`."""
        directory = Path(directory)
        path = directory / 'plan.json'
        if not path.is_file():
            raise FileNotFoundError(f'{path} does not exist; expected a plan directory with '
                                    'plan.json and plan.safetensors')
        meta = json.loads(path.read_text())
        _need(meta.get('format') == PLAN_FORMAT,
              f'format must be {PLAN_FORMAT!r}, got {meta.get("format")!r}', path)
        _need(meta.get('version') == VERSION,
              f'version must be {VERSION}, got {meta.get("version")!r}', path)
        for key in ('method', 'spec', 'target_bits_per_param', 'candidates', 'layers'):
            _need(key in meta, f'field {key!r} is missing', path)
        _, tensors = _read_safetensors(directory / 'plan.safetensors', PLAN_FORMAT)
        _need(set(tensors) == set(meta['layers']),
              f'plan.safetensors layers {sorted(tensors)} differ from plan.json layers '
              f'{sorted(meta["layers"])}', path)
        for name, info in meta['layers'].items():
            t = tensors[name]
            _need(t.dtype == torch.uint8 and tuple(t.shape) == (info['out_features'],),
                  f'bits of {name} must be uint8 ({info["out_features"]},), got {t.dtype} '
                  f'{tuple(t.shape)}', path)
            bad = set(torch.unique(t).tolist()) - set(meta['candidates'])
            _need(not bad, f'bits of {name} contain {sorted(bad)}, not in candidates '
                  f'{meta["candidates"]}', path)
        return cls(QuantSpec.from_dict(meta['spec']), meta['method'], tensors,
                   {k: int(v['in_features']) for k, v in meta['layers'].items()},
                   float(meta['target_bits_per_param']), meta.get('budget_bytes'),
                   tuple(meta['candidates']), meta.get('extra', {}))
