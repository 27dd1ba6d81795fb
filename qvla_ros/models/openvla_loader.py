# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Read an upstream OpenVLA / OpenVLA-OFT folder into :class:`OpenVLAPolicy`.

Weights come from safetensors only (single file or sharded with ``model.safetensors.index.json``);
OFT's separately saved heads are read with ``torch.load(weights_only=True)``. The tokenizer is
loaded with ``AutoTokenizer.from_pretrained(folder)``; ``trust_remote_code`` is never enabled.
"""

import json
from pathlib import Path
from typing import Dict, Optional

import torch

from qvla_ros.models.normalization import ActionNormalizer
from qvla_ros.models.openvla import OpenVLAConfig, OpenVLAPolicy
from qvla_ros.models.upstream_vision import map_state, spec_from_state
from qvla_ros.storage.errors import read_json_object
from qvla_ros.storage.errors import read_safetensors as read_tensor_file

LLAMA_FIELDS = ('vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers',
                'num_attention_heads', 'num_key_value_heads', 'rms_norm_eps', 'rope_theta',
                'max_position_embeddings', 'hidden_act', 'attention_bias', 'mlp_bias',
                'tie_word_embeddings')
OFT_CHUNK = 8  # NUM_ACTIONS_CHUNK of the LIBERO OFT checkpoints (not stored in the files)


def is_upstream_folder(folder: Path) -> bool:
    """Return True if ``folder`` holds an upstream OpenVLA config.json."""
    path = Path(folder) / 'config.json'
    if not path.is_file():
        return False
    cfg = read_json_object(path, 'a checkpoint config')
    return cfg.get('model_type') == 'openvla' or any(
        'OpenVLA' in a for a in cfg.get('architectures') or [])


def read_safetensors(folder: Path) -> Dict[str, torch.Tensor]:
    """Return every tensor of the folder's (possibly sharded) safetensors weights."""
    index = folder / 'model.safetensors.index.json'
    if index.is_file():
        weight_map = read_json_object(index, 'a sharded safetensors index').get('weight_map')
        if not isinstance(weight_map, dict):
            raise ValueError(f'{index}: expected a "weight_map" object of tensor -> file')
        files = sorted(set(weight_map.values()))
    elif (folder / 'model.safetensors').is_file():
        files = ['model.safetensors']
    else:
        bins = sorted(p.name for p in folder.glob('*.bin'))
        raise FileNotFoundError(
            f'{folder}: no model.safetensors or model.safetensors.index.json'
            + (f' (found pickle weights {bins}: convert them to safetensors first; pickles '
               'are not loaded)' if bins else ''))
    state: Dict[str, torch.Tensor] = {}
    for name in files:
        state.update(read_tensor_file(folder / name))
    return state


def _head_file(folder: Path, stem: str) -> Optional[Path]:
    found = sorted(folder.glob(f'{stem}*.safetensors')) or sorted(folder.glob(f'{stem}*.pt'))
    return found[-1] if found else None


def read_head(path: Path) -> Dict[str, torch.Tensor]:
    """Return an OFT head state dict without the DDP ``module.`` prefix."""
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location='cpu', weights_only=True)
    return {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}


def norm_stats(folder: Path, config: dict) -> dict:
    """Return the norm stats from dataset_statistics.json, else from config.json."""
    path = folder / 'dataset_statistics.json'
    stats = json.loads(path.read_text()) if path.is_file() else config.get('norm_stats')
    if not stats:
        raise ValueError(f'{folder}: no normalization statistics; expected '
                         'dataset_statistics.json or norm_stats in config.json')
    return stats


def _proprio_normalizer(stats: dict, key: str) -> ActionNormalizer:
    prop = stats.get(key, {}).get('proprio')
    if not prop or 'q01' not in prop:
        raise ValueError(f'norm stats {key!r} lack proprio q01/q99, which OFT with a proprio '
                         'projector needs')
    return ActionNormalizer.from_stats({key: {'action': prop}}, key)


def load_openvla(folder, unnorm_key: Optional[str] = None, chunk_size: Optional[int] = None,
                 control_hz: float = 10.0) -> OpenVLAPolicy:
    """Load an upstream OpenVLA (discrete tokens) or OpenVLA-OFT (L1 head) folder."""
    from transformers import AutoTokenizer
    folder = Path(folder)
    if not is_upstream_folder(folder):
        raise ValueError(f'{folder}: config.json is not an OpenVLA config (model_type '
                         '"openvla" or architectures OpenVLAForActionPrediction)')
    cfg = json.loads((folder / 'config.json').read_text())
    state = read_safetensors(folder)
    ids, sizes = cfg['timm_model_ids'], cfg['image_sizes']
    fused = bool(cfg.get('use_fused_vision_backbone'))
    acts = cfg.get('timm_override_act_layers') or [None] * len(ids)
    prefixes = ['vision_backbone.featurizer.'] + (['vision_backbone.fused_featurizer.']
                                                  if fused else [])
    specs, mapped = [], {}
    for i, prefix in enumerate(prefixes):
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        spec = spec_from_state(ids[i], sizes[i], sub, acts[i])
        specs.append(spec)
        mapped.update({f'vision.{i}.{k}': v for k, v in map_state(spec, sub).items()})
    text = cfg['text_config']
    llm = {k: text[k] for k in LLAMA_FIELDS if k in text}
    for k, v in state.items():
        if k.startswith('language_model.model.'):
            mapped['language.' + k[len('language_model.model.'):]] = v
        elif k.startswith('projector.'):
            mapped[k] = v
    mapped['lm_head.weight'] = state['language_model.lm_head.weight']
    stats = norm_stats(folder, cfg)
    normalizer = ActionNormalizer.from_stats(stats, unnorm_key)  # validates the key first
    unnorm_key = unnorm_key or next(iter(stats))
    head_path = _head_file(folder, 'action_head')
    proprio_path = _head_file(folder, 'proprio_projector')
    variant, action_dim, head_hidden, proprio_dim, proprio_norm = 'discrete', None, 0, 0, None
    if head_path is not None:
        head = read_head(head_path)
        variant = 'l1'
        action_dim = head['model.fc2.weight'].shape[0]
        head_hidden = head['model.fc1.weight'].shape[0]
        mapped.update({'action_head.' + k[len('model.'):]: v for k, v in head.items()})
    if proprio_path is not None:
        proj = read_head(proprio_path)
        proprio_dim = proj['fc1.weight'].shape[1]
        mapped.update({'proprio_projector.' + k: v for k, v in proj.items()})
        proprio_norm = _proprio_normalizer(stats, unnorm_key)
    action_dim = action_dim or normalizer.q01.size
    config = OpenVLAConfig(variant, tuple(specs), llm, int(cfg.get('n_action_bins', 256)),
                           text['vocab_size'] - int(cfg.get('pad_to_multiple_of', 0)),
                           action_dim, (chunk_size or OFT_CHUNK) if variant == 'l1' else 1,
                           proprio_dim, head_hidden, control_hz)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    policy = OpenVLAPolicy(config, normalizer, tokenizer, proprio_norm)
    dtype = next(iter(mapped.values())).dtype
    policy.to(dtype)
    missing, unexpected = policy.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ValueError(f'{folder}: weights do not match the OpenVLA layout; missing '
                         f'{sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}')
    return policy.eval()
