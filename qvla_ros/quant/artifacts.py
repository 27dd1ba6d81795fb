# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Sensitivity files and quant plans on disk (docs/formats.md), validated on load.

Every artifact carries ``format`` and ``version``; a wrong, missing or mismatched field is a
ValueError naming the field and what was expected. Nothing is filled in silently. Files are
written to a temporary name and renamed.
"""

from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

from safetensors.torch import save_file
import torch

from qvla_ros.core.spec import check_bits, QuantSpec
from qvla_ros.storage.atomic import write_file, write_text
from qvla_ros.storage.errors import (ArtifactError, read_json_object, read_safetensors,
                                     split_metadata)

SENS_FORMAT, PLAN_FORMAT, VERSION = 'qvla-sensitivity', 'qvla-plan', 1
ACTION_DEFINITION = ('squared L2 over the whole normalized action chunk (B, H, A), '
                     'mean over calibration samples')


def _need(cond: bool, what: str, path) -> None:
    if not cond:
        raise ArtifactError(f'{path}: {what}')


def _check_bit_list(bits, where) -> None:
    """Every entry a supported bit-width, none twice."""
    for b in bits:
        _need(isinstance(b, int) and not isinstance(b, bool), f'bit-width {b!r} must be an '
              'integer', where)
        try:
            check_bits(b)
        except ValueError as err:
            raise ArtifactError(f'{where}: {err}') from None
    _need(len(set(bits)) == len(bits), f'bit-widths {list(bits)} repeat an entry', where)


def _check_in_features(in_features: dict, where) -> None:
    for name, k in in_features.items():
        _need(isinstance(k, int) and not isinstance(k, bool) and k > 0,
              f'in_features of {name} must be a positive integer, got {k!r}', where)


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
        """Raise ArtifactError if shapes, bits or layer sets disagree."""
        _check_bit_list(list(self.bits), where)
        _need(bool(self.scores), 'no layers: expected one scores tensor per quantizable layer',
              where)
        _check_in_features(self.in_features, where)
        _need(set(self.scores) == set(self.in_features),
              f'layers with scores {sorted(self.scores)} differ from layers with in_features '
              f'{sorted(self.in_features)}', where)
        for name, s in self.scores.items():
            _need(s.ndim == 2 and s.shape[0] == len(self.bits) and s.shape[1] > 0,
                  f'scores of {name} must be ({len(self.bits)}, out_features >= 1), got '
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
        write_file(path, lambda tmp: save_file(tensors, str(tmp),
                                               metadata={'qvla': json.dumps(meta)}))

    @classmethod
    def load(cls, path: Path) -> 'SensitivityFile':
        """Read and validate a file written by :meth:`save`."""
        meta, tensors = _read_safetensors(path, SENS_FORMAT)
        for key in ('bits', 'method', 'n_samples', 'in_features'):
            _need(key in meta, f'metadata field {key!r} is missing', path)
        _need(isinstance(meta['bits'], list), "metadata field 'bits' must be a list", path)
        _need(isinstance(meta['in_features'], dict),
              "metadata field 'in_features' must be an object", path)
        _check_in_features(meta['in_features'], path)
        _need(isinstance(meta['n_samples'], int), 'n_samples must be an integer', path)
        out = cls(tuple(meta['bits']), str(meta['method']), meta['n_samples'], tensors,
                  dict(meta['in_features']), meta.get('extra', {}))
        out.validate(path)
        return out


def _read_safetensors(path: Path, fmt: str):
    path = Path(path)
    tensors, header = read_safetensors(path, 'pt', with_metadata=True,
                                       what=f'a {fmt} safetensors file')
    meta, present = split_metadata(header, 'qvla', path)
    _need(present, f'no qvla metadata; expected a {fmt} file', path)
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
        write_file(directory / 'plan.safetensors',
                   lambda tmp: save_file(tensors, str(tmp), metadata={'qvla': json.dumps(
                       {'format': PLAN_FORMAT, 'version': VERSION})}))
        write_text(directory / 'plan.json', self.summary_text())

    def summary_text(self) -> str:
        """Return plan.json's text: the summary as sorted, indented JSON."""
        return json.dumps(self.summary(), indent=1, sort_keys=True) + '\n'

    @classmethod
    def from_summary(cls, meta: dict, bits: Dict[str, torch.Tensor],
                     where) -> 'QuantPlan':
        """Return the plan of a plan.json summary ``meta`` with ``bits`` per layer.

        Checks the summary's fields, that ``bits`` covers exactly its layers with their
        shapes, and that every width is a candidate and every candidate supported.
        """
        _need(meta.get('format') == PLAN_FORMAT,
              f'format must be {PLAN_FORMAT!r}, got {meta.get("format")!r}', where)
        _need(meta.get('version') == VERSION,
              f'version must be {VERSION}, got {meta.get("version")!r}', where)
        for key in ('method', 'spec', 'target_bits_per_param', 'candidates', 'layers'):
            _need(key in meta, f'field {key!r} is missing', where)
        _need(isinstance(meta['candidates'], list) and isinstance(meta['layers'], dict),
              'candidates must be a list and layers an object', where)
        _check_bit_list(meta['candidates'], where)
        _need(set(bits) == set(meta['layers']),
              f'the bits cover layers {sorted(bits)}, the summary lists {sorted(meta["layers"])}',
              where)
        for name, info in meta['layers'].items():
            _need(isinstance(info, dict), f'layer {name} must be an object', where)
            _check_in_features({name: info.get('in_features')}, where)
            t = bits[name]
            _need(t.dtype == torch.uint8 and tuple(t.shape) == (info.get('out_features'),),
                  f'bits of {name} must be uint8 ({info.get("out_features")},), got {t.dtype} '
                  f'{tuple(t.shape)}', where)
            bad = set(torch.unique(t).tolist()) - set(meta['candidates'])
            _need(not bad, f'bits of {name} contain {sorted(bad)}, not in candidates '
                  f'{meta["candidates"]}', where)
        try:
            spec = QuantSpec.from_dict(meta['spec'])
            target = float(meta['target_bits_per_param'])
        except (TypeError, ValueError) as err:
            raise ArtifactError(f'{where}: {err}') from None
        return cls(spec, str(meta['method']), dict(bits),
                   {k: int(v['in_features']) for k, v in meta['layers'].items()}, target,
                   meta.get('budget_bytes'), tuple(meta['candidates']), meta.get('extra', {}))

    @classmethod
    def load(cls, directory: Path) -> 'QuantPlan':
        """Read and validate a plan directory written by :meth:`save`."""
        directory = Path(directory)
        path = directory / 'plan.json'
        meta = read_json_object(path, 'a plan directory with plan.json and plan.safetensors')
        _, tensors = _read_safetensors(directory / 'plan.safetensors', PLAN_FORMAT)
        return cls.from_summary(meta, tensors, path)
