# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Read an upstream OpenVLA / OpenVLA-OFT folder, as the Hub has it, into OpenVLAPolicy.

Weights come from safetensors (one file, or ``model-0000k-of-0000N.safetensors`` with
``model.safetensors.index.json``). The model is built on the meta device in the checkpoint's
dtype and every tensor is assigned as it is read, one at a time, so the peak memory is about
the checkpoint's size, not a float32 copy of it. OFT's separately saved parts
(``action_head--*``, ``proprio_projector--*``, FiLM's ``vision_backbone--*``) are read from
safetensors, or from ``.pt`` with ``torch.load(weights_only=True)``, which executes no code
(``qvla convert`` turns them into safetensors). Any other weight file is an error naming it.
The tokenizer is loaded with ``AutoTokenizer.from_pretrained(folder)``; ``trust_remote_code``
is never enabled.
"""

from pathlib import Path
import re
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from qvla_ros.models.normalization import BoundsNormalizer
from qvla_ros.models.openvla import OpenVLAConfig, OpenVLAPolicy
from qvla_ros.models.openvla_config import filled_config, UpstreamOptions
from qvla_ros.models.upstream_vision import map_state, spec_from_state
from qvla_ros.storage.atomic import check_output, fill_folder
from qvla_ros.storage.errors import ArtifactError, read_json_object
from qvla_ros.storage.errors import read_safetensors as read_tensor_file

PARTS = ('action_head', 'proprio_projector', 'vision_backbone')
WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.ckpt', '.pkl', '.safetensors')
TOWERS = ('vision_backbone.featurizer.', 'vision_backbone.fused_featurizer.')


def is_upstream_folder(folder: Path) -> bool:
    """Return True if ``folder`` holds an upstream OpenVLA config.json."""
    path = Path(folder) / 'config.json'
    if not path.is_file():
        return False
    cfg = read_json_object(path, 'a checkpoint config')
    return cfg.get('model_type') == 'openvla' or any(
        'OpenVLA' in a for a in cfg.get('architectures') or [])


class TensorIndex:
    """The tensors of a (possibly sharded) safetensors checkpoint, read one at a time."""

    def __init__(self, folder: Path):
        from safetensors import safe_open
        index = folder / 'model.safetensors.index.json'
        if index.is_file():
            weight_map = read_json_object(index, 'a sharded safetensors index').get('weight_map')
            if not isinstance(weight_map, dict):
                raise ArtifactError(f'{index}: expected a "weight_map" object of tensor -> file')
            files = sorted(set(weight_map.values()))
        elif (folder / 'model.safetensors').is_file():
            files = ['model.safetensors']
        else:
            bins = sorted(p.name for p in folder.glob('*.bin'))
            raise ArtifactError(
                f'{folder}: no model.safetensors or model.safetensors.index.json'
                + (f' (found pickle weights {bins}: convert them to safetensors first; pickles '
                   'are not loaded)' if bins else ''))
        self.where: Dict[str, str] = {}
        self._handles = {}
        for name in files:
            path = folder / name
            try:
                handle = safe_open(str(path), framework='pt')
            except Exception as err:  # noqa: B902 - SafetensorError, OSError: one message
                raise ArtifactError(f'{path} is not a readable safetensors file ({err})') \
                    from None
            self._handles[name] = handle
            self.where.update({k: name for k in handle.keys()})

    def names(self, prefix: str = ''):
        """Return the tensor names that start with ``prefix``, sorted."""
        return sorted(k for k in self.where if k.startswith(prefix))

    def get(self, name: str) -> torch.Tensor:
        """Return one tensor, read now."""
        return self._handles[self.where[name]].get_tensor(name)


def part_files(folder: Path) -> Dict[str, Path]:
    """Return {part: file} of OFT's separately saved parts; refuse weights we do not know."""
    found: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix not in WEIGHT_SUFFIXES or path.name.startswith('model'):
            continue
        part = next((p for p in PARTS if path.name.startswith(p + '--')), None)
        if part is None:
            raise ArtifactError(f'{path}: a weight file this loader does not know; expected '
                                f'model*.safetensors and {", ".join(p + "--*" for p in PARTS)}')
        if part in found and found[part].suffix == '.safetensors':
            continue  # a converted copy wins over the pickle beside it
        if part in found and path.suffix != '.safetensors':
            raise ArtifactError(f'{folder}: several {part} files ({found[part].name}, '
                                f'{path.name}); expected one')
        found[part] = path
    return found


def read_part(path: Path) -> Dict[str, torch.Tensor]:
    """Return a part's state dict without DDP's ``module.`` prefix."""
    if path.suffix == '.safetensors':
        state = read_tensor_file(path)
    else:
        try:
            state = torch.load(str(path), map_location='cpu', weights_only=True)
        except Exception as err:  # noqa: B902 - unpickling errors have many types
            raise ArtifactError(f'{path} cannot be read as a weights-only torch file ({err})') \
                from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ArtifactError(f'{path}: expected a state dict of tensors')
    return {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}


def _merge_lora(state: Dict[str, torch.Tensor], path: Path) -> Dict[str, torch.Tensor]:
    """Fold PEFT LoRA layers (``X.base_layer`` + ``X.lora_A/B.default``) into plain weights.

    OFT's deploy code re-applies LoRA with ``lora_alpha = min(rank, 16)`` before loading the
    FiLM vision checkpoint, so W = base + min(r, 16) / r * B @ A.
    """
    out = {}
    for key, value in state.items():
        if '.lora_A.' in key or '.lora_B.' in key:
            continue
        if '.base_layer.' not in key:
            out[key] = value
            continue
        stem, kind = key.split('.base_layer.')
        if kind == 'weight':
            a, b = state.get(f'{stem}.lora_A.default.weight'), state.get(
                f'{stem}.lora_B.default.weight')
            if a is None or b is None:
                raise ArtifactError(f'{path}: {key} has no lora_A/lora_B beside it')
            r = a.shape[0]
            value = (value.float() + min(r, 16) / r * (b.float() @ a.float())).to(value.dtype)
        out[f'{stem}.{kind}'] = value
    return out


def film_parts(path: Path, towers: int) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Split a FiLM ``vision_backbone--*`` file into (timm vision tensors, FiLM tensors).

    Vision tensors keep upstream names (``vision_backbone.featurizer.blocks.N.attn...``); FiLM
    tensors are named ``film.<tower>.<scale|shift>.<block>.<weight|bias>``.
    """
    vision, film = {}, {}
    pattern = re.compile(r'(fused_)?featurizer\.blocks\.(\d+)\.(block\.|scale\.|shift\.)(.*)')
    for key, value in _merge_lora(read_part(path), path).items():
        name = key[len('vision_backbone.'):] if key.startswith('vision_backbone.') else key
        m = pattern.fullmatch(name)
        tower = 0 if name.startswith('featurizer.') else 1
        if tower >= towers or not name.startswith(('featurizer.', 'fused_featurizer.')):
            raise ArtifactError(f'{path}: unexpected tensor {key!r} in the FiLM vision backbone')
        if m is None:
            vision[f'{TOWERS[tower]}{name.split(".", 1)[1]}'] = value
        elif m.group(3) == 'block.':
            vision[f'{TOWERS[tower]}blocks.{m.group(2)}.{m.group(4)}'] = value
        else:
            film[f'film.{tower}.{m.group(3)[:-1]}.{m.group(2)}.{m.group(4)}'] = value
    return vision, film


def norm_stats(folder: Path, config: dict) -> dict:
    """Return the norm stats: dataset_statistics.json takes priority over config.json."""
    path = folder / 'dataset_statistics.json'
    stats = read_json_object(path, 'norm stats') if path.is_file() else config.get('norm_stats')
    if not stats or not isinstance(stats, dict):
        raise ArtifactError(f'{folder}: no normalization statistics; expected '
                            'dataset_statistics.json or norm_stats in config.json')
    return stats


def _stats_key(stats: dict, key: Optional[str], folder: Path) -> str:
    if key is None:
        if len(stats) != 1:
            raise ValueError(f'{folder}: several norm-stats keys {sorted(stats)}; pick one with '
                             'the upstream option unnorm_key')
        return next(iter(stats))
    if key not in stats:
        raise ValueError(f'{folder}: unnorm_key {key!r} is not in the norm stats; available '
                         f'keys: {sorted(stats)}')
    return key


def _vision(index: TensorIndex, cfg: dict, film_vision: dict):
    """Return (specs, mapped vision tensors) of the towers, FiLM's tensors overriding."""
    towers = 2 if cfg['use_fused_vision_backbone'] else 1
    acts = cfg['timm_override_act_layers']
    specs, mapped = [], {}
    for i, prefix in enumerate(TOWERS[:towers]):
        names = set(index.names(prefix)) | {k for k in film_vision if k.startswith(prefix)}
        sub = {k[len(prefix):]: film_vision[k] if k in film_vision else index.get(k)
               for k in sorted(names) if not k[len(prefix):].startswith(('attn_pool.', 'head.',
                                                                        'fc_norm.'))}
        spec = spec_from_state(cfg['timm_model_ids'][i], cfg['image_sizes'][i], sub, acts[i])
        specs.append(spec)
        mapped.update({f'vision.{i}.{k}': v for k, v in map_state(spec, sub).items()})
    return specs, mapped


def _materialize_buffers(policy: nn.Module) -> None:
    """Recompute the non-persistent buffers a meta-device build left empty."""
    for name, module in policy.named_modules():
        for bname, buf in list(module.named_buffers(recurse=False)):
            if not buf.is_meta:
                continue
            if bname == 'position_ids':
                value = torch.arange(buf.shape[-1]).expand(buf.shape)
            elif bname in ('inv_freq', 'original_inv_freq'):
                fresh = type(module)(config=module.config)
                value = getattr(fresh, bname)
            else:
                raise RuntimeError(f'cannot rebuild buffer {name}.{bname} after a meta-device '
                                   'build; the transformers version is not supported')
            module.register_buffer(bname, value, persistent=False)
            if bname == 'inv_freq' and hasattr(module, 'original_inv_freq'):
                module.original_inv_freq = value


def _assign(policy: nn.Module, tensors: Dict[str, torch.Tensor], dtype: torch.dtype,
            expected: set) -> None:
    """Assign ``tensors`` to the policy's parameters (no copy in the checkpoint dtype)."""
    unknown = sorted(set(tensors) - expected)
    if unknown:
        raise ArtifactError(f'tensors {unknown[:8]} do not belong to the OpenVLA layout')
    policy.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=False,
                           assign=True)


def load_openvla(folder, options: UpstreamOptions = UpstreamOptions(),
                 control_hz: float = 10.0) -> OpenVLAPolicy:
    """Load an upstream OpenVLA (discrete tokens) or OpenVLA-OFT (L1 head) folder as it is."""
    from transformers import AutoTokenizer
    folder = Path(folder)
    if not is_upstream_folder(folder):
        raise ValueError(f'{folder}: config.json is not an OpenVLA config (model_type '
                         '"openvla" or architectures OpenVLAForActionPrediction)')
    cfg = filled_config(read_json_object(folder / 'config.json', 'an OpenVLA config'))
    index = TensorIndex(folder)
    parts = {k: read_part(p) if k != 'vision_backbone' else p
             for k, p in part_files(folder).items()}
    towers = 2 if cfg['use_fused_vision_backbone'] else 1
    film_vision, film = film_parts(parts['vision_backbone'], towers) \
        if 'vision_backbone' in parts else ({}, {})
    specs, vision = _vision(index, cfg, film_vision)
    film = {k: v for k, v in film.items()  # the last block is never run (see upstream_vision)
            if int(k.split('.')[3]) < specs[int(k.split('.')[1])].depth - 1}
    stats = norm_stats(folder, cfg)
    key = _stats_key(stats, options.unnorm_key, folder)
    head, proj = parts.get('action_head'), parts.get('proprio_projector')
    opts = options.resolve(key, head is not None)
    eps = 1e-8 if head is not None else 0.0  # OFT adds 1e-8 to the span, OpenVLA does not
    normalizer = BoundsNormalizer.from_stats(stats, key, opts.normalization, eps)
    prop_norm = BoundsNormalizer.from_stats(stats, key, opts.normalization, 1e-8, 'proprio') \
        if proj is not None else None
    text = cfg['text_config']
    config = OpenVLAConfig(
        'l1' if head is not None else 'discrete', tuple(specs), text,
        int(cfg['n_action_bins']), text['vocab_size'] - int(cfg['pad_to_multiple_of']),
        head['model.fc2.weight'].shape[0] if head is not None else normalizer.low.size,
        opts.chunk_size, proj['fc1.weight'].shape[1] if proj is not None else 0,
        head['model.fc1.weight'].shape[0] if head is not None else 0, control_hz,
        opts.num_images, opts.attention, opts.normalization, opts.center_crop, bool(film))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    dtype = index.get(index.names('language_model.model.embed_tokens')[0]).dtype
    with torch.device('meta'):
        policy = OpenVLAPolicy(config, normalizer, tokenizer, prop_norm).to(dtype)
    expected = set(policy.state_dict())
    _assign(policy, vision, dtype, expected)
    del vision, film_vision
    for name in index.names():
        if name.startswith(TOWERS):
            continue
        target = ('language.' + name[len('language_model.model.'):]
                  if name.startswith('language_model.model.') else
                  'lm_head.weight' if name == 'language_model.lm_head.weight' else name)
        _assign(policy, {target: index.get(name)}, dtype, expected)
    extra = {**({'action_head.' + k[len('model.'):]: v for k, v in head.items()} if head else {}),
             **({'proprio_projector.' + k: v for k, v in proj.items()} if proj else {}), **film}
    _assign(policy, extra, dtype, expected)
    _materialize_buffers(policy)
    missing = sorted(n for n, t in policy.state_dict().items() if t.is_meta)
    if missing:
        raise ArtifactError(f'{folder}: weights do not match the OpenVLA layout; missing '
                            f'{missing[:8]}')
    return policy.eval()


def convert_upstream(src: Path, out: Path, overwrite: bool = False) -> list:
    """Write a copy of upstream folder ``src`` whose OFT parts are safetensors, not pickles.

    Every other file is hard-linked (or copied across file systems); each ``.pt`` part is
    read with ``torch.load(weights_only=True)`` and saved as ``<name>.safetensors`` with its
    tensors unchanged. Return the converted file names.
    """
    import os
    import shutil
    from safetensors.torch import save_file
    src, out = Path(src), Path(out)
    if not is_upstream_folder(src):
        raise ValueError(f'{src}: expected an upstream OpenVLA / OFT folder (config.json with '
                         'model_type "openvla")')
    check_output(out, overwrite, [src])
    parts = part_files(src)

    def fill(tmp: Path) -> list:
        converted = []
        for path in sorted(src.rglob('*')):
            if path.is_dir():
                continue
            rel = path.relative_to(src)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            if path in parts.values() and path.suffix != '.safetensors':
                state = {k: v.contiguous() for k, v in read_part(path).items()}
                save_file(state, str(tmp / rel.with_suffix('.safetensors')))
                converted.append(rel.name)
                continue
            try:
                os.link(path, tmp / rel)
            except OSError:
                shutil.copy2(path, tmp / rel)
        return converted
    return fill_folder(out, fill, overwrite)
