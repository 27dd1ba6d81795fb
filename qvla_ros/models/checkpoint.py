# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Policy checkpoints: FP and packed-quantized folders, and the ``--model`` spec parser.

A folder holds ``config.json`` (format, version, model name and config, and for quantized
checkpoints ``quantization_config``), ``model.safetensors`` and ``norm_stats.json``.
A quantized folder also holds ``plan.json``; loading it never needs the FP checkpoint: the
packed layers are rebuilt from their own tensors and ``load_state_dict(strict=True)`` checks
that every tensor is accounted for. Written atomically; no pickle.
"""

from dataclasses import asdict
import json
import os
from pathlib import Path
import shutil
from typing import Optional

from safetensors.torch import load_file, save_file
import torch
from torch import nn

from qvla_ros.kernels.format import PackedLayout
from qvla_ros.kernels.linear import MixedBitLinear
from qvla_ros.models.normalization import ActionNormalizer
from qvla_ros.models.reference import build_reference, CONFIGS, RefConfig, ReferenceVLA
from qvla_ros.models.toy import build_toy_policy, ToyConfig, ToyPolicy
from qvla_ros.quant.activation import ActSpec
from qvla_ros.quant.apply import QuantizedLinear
from qvla_ros.quant.artifacts import QuantPlan
from qvla_ros.quant.spec import QuantSpec

FORMAT, VERSION = 'qvla-checkpoint', 1


def _write_folder(out: Path, files: dict) -> None:
    """Write files into a temp sibling folder, then swap it in place of ``out``."""
    out = Path(out)
    tmp = out.with_name(f'.{out.name}.tmp')
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, writer in files.items():
        writer(tmp / name)
    if out.exists():
        old = out.with_name(f'.{out.name}.old')
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


MODELS = ('toy', 'qvla-ref', 'openvla')
UNNORM_KEY = 'default'


def _model_name(policy: nn.Module) -> str:
    from qvla_ros.models.openvla import OpenVLAPolicy
    if isinstance(policy, ReferenceVLA):
        return 'qvla-ref'
    if isinstance(policy, ToyPolicy):
        return 'toy'
    if isinstance(policy, OpenVLAPolicy):
        return 'openvla'
    raise ValueError(f'cannot save a {type(policy).__name__}; expected one of {MODELS}')


def _norm_stats(policy: nn.Module) -> dict:
    if isinstance(policy, ReferenceVLA):
        return policy.normalizer.to_stats(UNNORM_KEY)
    if _model_name(policy) == 'openvla':
        stats = policy.normalizer.to_stats(UNNORM_KEY)
        if policy.proprio_normalizer is not None:
            stats[UNNORM_KEY]['proprio'] = policy.proprio_normalizer.to_stats(
                UNNORM_KEY)[UNNORM_KEY]['action']
        return stats
    return {UNNORM_KEY: {'action': {'q01': policy.action_low.tolist(),
                                    'q99': policy.action_high.tolist()}}}


def _files(policy: nn.Module, config: dict, state: dict) -> dict:
    """Return the writers of a checkpoint folder (OpenVLA adds its tokenizer)."""
    files = {'config.json': lambda p: p.write_text(json.dumps(config, indent=1)),
             'model.safetensors': lambda p: save_file(state, str(p)),
             'norm_stats.json': lambda p: p.write_text(json.dumps(_norm_stats(policy),
                                                                  indent=1))}
    if config['model'] == 'openvla':
        files['tokenizer'] = lambda p: policy.tokenizer.save_pretrained(str(p))
    return files


def _build(name: str, config: dict, folder: Path) -> nn.Module:
    if name == 'toy':
        return ToyPolicy(ToyConfig(**config))
    stats_path = folder / 'norm_stats.json'
    if not stats_path.is_file():
        raise FileNotFoundError(f'{stats_path} does not exist; {name} checkpoints need their '
                                'action normalization statistics')
    stats = json.loads(stats_path.read_text())
    normalizer = ActionNormalizer.from_stats(stats, UNNORM_KEY)
    if name == 'openvla':
        from transformers import AutoTokenizer
        from qvla_ros.models.openvla import OpenVLAConfig, OpenVLAPolicy
        from qvla_ros.models.upstream_vision import BackboneSpec
        cfg = OpenVLAConfig(**{**config, 'backbones': tuple(
            BackboneSpec(**b) for b in config['backbones'])})
        prop = stats[UNNORM_KEY].get('proprio')
        prop = ActionNormalizer.from_stats({UNNORM_KEY: {'action': prop}}) if prop else None
        tok = AutoTokenizer.from_pretrained(str(folder / 'tokenizer'), trust_remote_code=False)
        return OpenVLAPolicy(cfg, normalizer, tok, prop)
    return ReferenceVLA(RefConfig(**config), normalizer)


def save_policy(policy: nn.Module, out: Path, dtype: Optional[torch.dtype] = None) -> None:
    """Write an FP checkpoint folder; ``dtype`` (e.g. bf16) casts its floating tensors.

    Loading always restores the model's own dtype (fp32), so a bf16 file halves the size and
    rounds the weights once.
    """
    config = {'format': FORMAT, 'version': VERSION, 'model': _model_name(policy),
              'config': asdict(policy.config)}
    state = {k: v.detach().contiguous() for k, v in policy.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    _write_folder(out, _files(policy, config, state))


def save_quantized(policy: nn.Module, plan: QuantPlan, out: Path,
                   act: Optional[ActSpec] = None) -> None:
    """Write a packed-quantized checkpoint of ``policy`` (already passed through quantize_)."""
    config = {'format': FORMAT, 'version': VERSION, 'model': _model_name(policy),
              'config': asdict(policy.config),
              'quantization_config': {'plan_id': plan.plan_id, 'method': plan.method,
                                      'spec': plan.spec.to_dict(),
                                      'act_bits': act.bits if act else None,
                                      'achieved_bits_per_param': plan.achieved_bits(),
                                      'layers': {k: {'in_features': plan.in_features[k],
                                                     'out_features': int(b.numel())}
                                                 for k, b in plan.bits.items()}}}
    state = {k: v.detach().contiguous() for k, v in policy.state_dict().items()}
    summary = json.dumps(plan.summary(), indent=1, sort_keys=True)
    _write_folder(out, {**_files(policy, config, state),
                        'plan.json': lambda p: p.write_text(summary)})


def _shell(state: dict, name: str, info: dict, spec: QuantSpec, act) -> nn.Module:
    wrapped = f'{name}.inner.counts' in state
    prefix = f'{name}.inner.' if wrapped else f'{name}.'
    tensors = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix) and '.' not in k[len(prefix):]}
    k_in = info['in_features']
    if 'scales' not in tensors:
        raise ValueError(f'model.safetensors has no packed tensors for layer {name}')
    gs = k_in // tensors['scales'].shape[1]  # scales is (rows, G) even with no rows
    inner = MixedBitLinear(PackedLayout.from_tensors(tensors, k_in, info['out_features'], gs),
                           spec)
    if not wrapped:
        return inner
    inv = state.get(f'{name}.inv_scale')
    return QuantizedLinear(inner, None if inv is None else inv.float(), act)


def plan_id_of(spec: str) -> str:
    """Return the plan id of a quantized checkpoint folder, or '' for FP models."""
    path = Path(spec) / 'config.json'
    if not path.is_file():
        return ''
    qc = json.loads(path.read_text()).get('quantization_config') or {}
    return str(qc.get('plan_id', ''))


def _random_init(spec: str) -> Optional[nn.Module]:
    """Return a random-init model for 'toy[:SEED]' or 'ref-<config>[:SEED]', else None."""
    name, _, seed = spec.partition(':')
    if name != 'toy' and not name.startswith('ref-'):
        return None
    if seed and not seed.isdigit():
        raise ValueError(f'expected {name}:SEED with an integer seed, got {spec!r}')
    if name == 'toy':
        return build_toy_policy(int(seed or 0))
    if name[4:] not in CONFIGS:
        raise ValueError(f'unknown qvla-ref config {name[4:]!r}; expected one of '
                         f'{sorted(CONFIGS)}')
    return build_reference(CONFIGS[name[4:]], int(seed or 0))


def load_policy(spec: str, unnorm_key: Optional[str] = None) -> nn.Module:
    """Return a policy: toy[:SEED], ref-<tiny|small|...>[:SEED] or a checkpoint folder.

    A folder is one of ours (FP or packed) or an upstream OpenVLA / OpenVLA-OFT folder;
    ``unnorm_key`` picks the upstream norm stats when they hold several datasets.
    """
    model = _random_init(spec)
    if model is not None:
        return model
    folder = Path(spec)
    from qvla_ros.models.openvla_loader import is_upstream_folder, load_openvla
    if is_upstream_folder(folder):
        return load_openvla(folder, unnorm_key)
    path = folder / 'config.json'
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist; expected toy[:SEED], '
                                'ref-<config>[:SEED] or a checkpoint folder with config.json '
                                'and model.safetensors')
    config = json.loads(path.read_text())
    if config.get('format') != FORMAT or config.get('version') != VERSION:
        raise ValueError(f'{path}: expected format {FORMAT!r} version {VERSION}, got '
                         f'{config.get("format")!r} version {config.get("version")!r}')
    if config.get('model') not in MODELS:
        raise ValueError(f'{path}: unknown model {config.get("model")!r}; expected one of '
                         f'{MODELS}')
    policy = _build(config['model'], config['config'], folder)
    state = load_file(str(folder / 'model.safetensors'))
    qc = config.get('quantization_config')
    if qc:
        spec_q = QuantSpec.from_dict(qc['spec'])
        act = ActSpec(qc['act_bits']) if qc.get('act_bits') else None
        for name, info in qc['layers'].items():
            parent, _, child = name.rpartition('.')
            setattr(policy.get_submodule(parent) if parent else policy, child,
                    _shell(state, name, info, spec_q, act))
    policy.load_state_dict(state, strict=True)
    return policy.eval()
