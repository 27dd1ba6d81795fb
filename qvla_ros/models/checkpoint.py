# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Policy checkpoints: FP and packed-quantized folders, and the ``--model`` spec parser.

A folder holds ``config.json`` (format, version, model name and config, and for quantized
checkpoints ``quantization_config``), ``model.safetensors`` and ``norm_stats.json``.
A quantized folder also holds ``plan.json``; loading it never needs the FP checkpoint: the
packed layers are rebuilt from their own tensors and ``load_state_dict(strict=True)`` checks
that every tensor is accounted for. The plan is rebuilt from the packed tensors and checked
against ``plan.json`` and the plan id in ``config.json``, so the id a node reports is the one
its weights carry. Every loading failure is one CheckpointError naming the file and the
problem. Written atomically through :mod:`qvla_ros.storage.atomic`; no pickle.
"""

from dataclasses import asdict, replace
import json
from pathlib import Path
from typing import Optional

from safetensors.torch import save_file
import torch
from torch import nn

from qvla_ros.core.policy import ResidualRotatable
from qvla_ros.core.spec import QuantSpec
from qvla_ros.kernels.format import PackedLayout
from qvla_ros.kernels.linear import MixedBitLinear
from qvla_ros.models.normalization import ActionNormalizer, BoundsNormalizer
from qvla_ros.models.openvla import OpenVLAConfig, OpenVLAPolicy
from qvla_ros.models.openvla_config import UpstreamOptions
from qvla_ros.models.openvla_loader import is_upstream_folder, load_openvla
from qvla_ros.models.reference import build_reference, CONFIGS, RefConfig, ReferenceVLA
from qvla_ros.models.toy import build_toy_policy, ToyConfig, ToyPolicy
from qvla_ros.models.upstream_vision import BackboneSpec
from qvla_ros.quant.activation import ActSpec
from qvla_ros.quant.apply import QuantizedLinear
from qvla_ros.quant.artifacts import QuantPlan
from qvla_ros.quant.rotation import Rotation
from qvla_ros.storage.atomic import recover_folder, sibling, write_folder
from qvla_ros.storage.errors import ArtifactError, read_json_object, read_safetensors
from qvla_ros.storage.fields import build
from qvla_ros.storage.lock import exclusive_lock

FORMAT, VERSION = 'qvla-checkpoint', 1


class CheckpointError(ArtifactError):
    """A checkpoint cannot be loaded; the text names the file and the problem."""


MODELS = ('toy', 'qvla-ref', 'openvla')
UNNORM_KEY = 'default'


def _model_name(policy: nn.Module) -> str:
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
            stats[UNNORM_KEY].update(policy.proprio_normalizer.to_stats(UNNORM_KEY, 'proprio')[
                UNNORM_KEY])
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


def _normalizers(folder: Path, name: str, config: dict):
    """Return (action normalizer, proprio normalizer or None) from norm_stats.json."""
    path = folder / 'norm_stats.json'
    stats = read_json_object(path, f'the action normalization statistics {name} checkpoints '
                                   'need')
    try:
        if name != 'openvla':
            return ActionNormalizer.from_stats(stats, UNNORM_KEY), None
        kind = config.get('normalization', 'bounds_q99')
        eps = 1e-8 if config.get('variant') == 'l1' else 0.0  # as upstream OFT / OpenVLA
        prop = None
        if isinstance(stats.get(UNNORM_KEY), dict) and 'proprio' in stats[UNNORM_KEY]:
            prop = BoundsNormalizer.from_stats(stats, UNNORM_KEY, kind, 1e-8, 'proprio')
        return BoundsNormalizer.from_stats(stats, UNNORM_KEY, kind, eps), prop
    except ValueError as err:
        raise CheckpointError(f'{path}: {err}') from None


def _build(name: str, config: dict, folder: Path) -> nn.Module:
    where = str(folder / 'config.json')
    if name == 'toy':
        return ToyPolicy(build(ToyConfig, config, where))
    normalizer, prop = _normalizers(folder, name, config if isinstance(config, dict) else {})
    if name == 'openvla':
        from transformers import AutoTokenizer
        backbones = config.get('backbones') if isinstance(config, dict) else None
        if not isinstance(backbones, list):
            raise CheckpointError(f"{where}: config field 'backbones' must be a list")
        cfg = build(OpenVLAConfig, config, where, backbones=tuple(
            build(BackboneSpec, b, f'{where} backbones') for b in backbones))
        tok = AutoTokenizer.from_pretrained(str(folder / 'tokenizer'), trust_remote_code=False)
        return OpenVLAPolicy(cfg, normalizer, tok, prop)
    return ReferenceVLA(build(RefConfig, config, where), normalizer)


def _schedule(policy: nn.Module, schedule: Optional[dict]) -> dict:
    """Return the chunk schedule to record: ``schedule``, the policy's, or its whole chunk."""
    chosen = schedule or getattr(policy, 'qvla_schedule', None) or {
        'mode': 'replan', 'execute_steps': int(policy.metadata()['chunk_size'])}
    return dict(chosen)


def save_policy(policy: nn.Module, out: Path, dtype: Optional[torch.dtype] = None,
                overwrite: bool = True, schedule: Optional[dict] = None) -> None:
    """Write an FP checkpoint folder; ``dtype`` (e.g. bf16) casts its floating tensors.

    An existing ``out`` is replaced (atomically) only with ``overwrite``. ``schedule`` (a
    ``ScheduleSpec.to_dict()``) is the chunk schedule evaluation, collection and the node run
    the checkpoint with; by default the policy's own, else its whole chunk.

    Loading always restores the model's own dtype (fp32), so a bf16 file halves the size and
    rounds the weights once.
    """
    config = {'format': FORMAT, 'version': VERSION, 'model': _model_name(policy),
              'config': asdict(policy.config), 'schedule': _schedule(policy, schedule)}
    state = {k: v.detach().contiguous() for k, v in policy.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    write_folder(out, _files(policy, config, state), overwrite)


def save_quantized(policy: nn.Module, plan: QuantPlan, out: Path,
                   act: Optional[ActSpec] = None, overwrite: bool = True) -> None:
    """Write a packed-quantized checkpoint of ``policy`` (already passed through quantize_).

    An existing ``out`` is replaced (atomically) only with ``overwrite``.
    """
    config = {'format': FORMAT, 'version': VERSION, 'model': _model_name(policy),
              'config': asdict(policy.config), 'schedule': _schedule(policy, None),
              'quantization_config': {'plan_id': plan.plan_id, 'method': plan.method,
                                      'spec': plan.spec.to_dict(),
                                      'act_bits': act.bits if act else None,
                                      'activation': act.to_dict() if act else None,
                                      'achieved_bits_per_param': plan.achieved_bits(),
                                      'layers': {k: _layer_entry(policy, plan, k, act)
                                                 for k in plan.bits}}}
    state = {k: v.detach().contiguous() for k, v in policy.state_dict().items()}
    summary = plan.summary_text()
    write_folder(out, {**_files(policy, config, state),
                       'plan.json': lambda p: p.write_text(summary)}, overwrite)


def _layer_entry(policy: nn.Module, plan: QuantPlan, name: str, act) -> dict:
    """Return a quantized layer's config entry: its shape, and its searched clip ratio."""
    entry = {'in_features': plan.in_features[name],
             'out_features': int(plan.bits[name].numel())}
    if act is not None and act.clip_search:
        entry['act_clip'] = policy.get_submodule(name).act.clip_ratio
    return entry


def _layer_act(act, info: dict, name: str, where: Path):
    """Return the activation spec of one layer: the model's, with its own searched clip."""
    if act is None or not act.clip_search:
        return act
    try:
        return replace(act, clip_ratio=float(info['act_clip']))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f'{where}: quantization_config.layers.{name}: expected act_clip, '
                              f'a number in (0, 1] (activation.clip_search is set): '
                              f'{type(err).__name__} {err}') from None


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
    rotation = Rotation(k_in) if f'{name}.rotation.sign_bits' in state else None  # signs: state
    return QuantizedLinear(inner, None if inv is None else inv.float(), act, rotation)


def plan_id_of(policy: nn.Module) -> str:
    """Return the verified plan id of a loaded quantized checkpoint, '' for FP models."""
    plan = getattr(policy, 'qvla_plan', None)
    return plan.plan_id if plan is not None else ''


def _verified_plan(folder: Path, policy: nn.Module, qc: dict) -> QuantPlan:
    """Rebuild the plan from the packed layers; check it against plan.json and config.json."""
    path = folder / 'plan.json'
    meta = read_json_object(path, 'the plan summary of a quantized checkpoint')
    bits = {name: policy.get_submodule(name) for name in qc['layers']}
    bits = {name: getattr(m, 'inner', m).bits_per_row() for name, m in bits.items()}
    plan = QuantPlan.from_summary(meta, bits, path)
    if json.loads(plan.summary_text()) != meta:
        raise CheckpointError(f'{path} does not describe the packed weights in '
                              f'{folder / "model.safetensors"} (its bit histograms or sizes '
                              'differ); the folder mixes files of two quantizations')
    if qc.get('plan_id') != plan.plan_id:
        raise CheckpointError(f'{folder / "config.json"}: plan id {qc.get("plan_id")!r} is not '
                              f'the id of the packed weights and plan.json ({plan.plan_id}); '
                              'the checkpoint was edited or assembled from other files')
    return plan


def _read_schedule(schedule, where: Path) -> Optional[dict]:
    """Return the recorded schedule (None for checkpoints from before it was recorded)."""
    if schedule is None:
        return None
    allowed = {'mode': str, 'execute_steps': int, 'aggregator': str, 'decay': float,
               'version': int}
    if not isinstance(schedule, dict) or set(schedule) - set(allowed) or any(
            k in schedule and not isinstance(schedule[k], (int, float) if t is float else t)
            for k, t in allowed.items()):
        raise CheckpointError(f'{where}: schedule must be an object of {sorted(allowed)}, got '
                              f'{schedule!r}')
    return dict(schedule)


def _check_action_space(folder: Path, policy: nn.Module) -> None:
    """Raise CheckpointError unless the normalization fits the actions the model predicts."""
    dim = policy.metadata()['action_dim']
    normalizer = getattr(policy, 'normalizer', None)
    if normalizer is not None and normalizer.q01.size != dim:
        raise CheckpointError(f'{folder / "norm_stats.json"}: action statistics have '
                              f'{normalizer.q01.size} dimensions, the model predicts {dim}')
    low, high = (getattr(policy, k, None) for k in ('action_low', 'action_high'))
    if low is not None and not (torch.isfinite(low).all() and torch.isfinite(high).all()
                                and (low <= high).all()):
        raise CheckpointError(f'{folder / "model.safetensors"}: action bounds must be finite '
                              'with action_low <= action_high')


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


def load_policy(spec: str, upstream=None) -> nn.Module:
    """Return a policy: toy[:SEED], ref-<tiny|small|...>[:SEED] or a checkpoint folder.

    A folder is one of ours (FP or packed) or an upstream OpenVLA / OpenVLA-OFT folder;
    ``upstream`` (:class:`~qvla_ros.models.openvla_config.UpstreamOptions`, or its
    ``name=value,...`` text) says how to run an upstream folder where its files do not (norm
    stats key, chunk length, ...). Any problem with the files is a CheckpointError naming the
    file.
    """
    model = _random_init(spec)
    if model is not None:
        return model
    folder = Path(spec)
    if not folder.exists() and sibling(folder, 'old').exists():
        with exclusive_lock(sibling(folder, 'lock'), f'recovering {folder}'):
            recover_folder(folder)  # a write of this folder was killed mid-swap
    try:
        if is_upstream_folder(folder):
            if not isinstance(upstream, UpstreamOptions):
                upstream = UpstreamOptions.parse(upstream or '')
            return load_openvla(folder, upstream)
        if upstream:
            raise ValueError(f'{folder} is not an upstream OpenVLA folder; upstream options '
                             'apply to those only')
        return _load_folder(folder)
    except ArtifactError as err:
        raise CheckpointError(str(err)) from None
    except (ValueError, KeyError, TypeError, RuntimeError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f'{folder}: cannot load the checkpoint: {first}') from None


def _load_folder(folder: Path) -> nn.Module:
    path = folder / 'config.json'
    if not path.is_file():
        raise CheckpointError(f'{path} does not exist; expected toy[:SEED], ref-<config>[:SEED] '
                              'or a checkpoint folder with config.json and model.safetensors')
    config = read_json_object(path, 'a qvla checkpoint config')
    if config.get('format') != FORMAT or config.get('version') != VERSION:
        raise CheckpointError(f'{path}: expected format {FORMAT!r} version {VERSION}, got '
                              f'{config.get("format")!r} version {config.get("version")!r}')
    if config.get('model') not in MODELS:
        raise CheckpointError(f'{path}: unknown model {config.get("model")!r}; expected one of '
                              f'{MODELS}')
    policy = _build(config['model'], config.get('config'), folder)
    state = read_safetensors(folder / 'model.safetensors',
                             what='the weights of the checkpoint (model.safetensors)')
    qc = config.get('quantization_config')
    if qc:
        _install_packed(policy, state, qc, path)
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f'{folder / "model.safetensors"} does not fit {path}: '
                              f'{str(err).splitlines()[0]}') from None
    _check_action_space(folder, policy)
    policy.qvla_schedule = _read_schedule(config.get('schedule'), path)
    if qc:
        policy.qvla_plan = _verified_plan(folder, policy, qc)
    return policy.eval()


def _act_spec(qc: dict, where: Path) -> Optional[ActSpec]:
    """Return the activation spec of a quantization config (``act_bits`` alone: older files)."""
    try:
        if qc.get('activation'):
            return ActSpec.from_dict(qc['activation'])
        return ActSpec(qc['act_bits']) if qc.get('act_bits') else None
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'{where}: quantization_config.activation: {err}') from None


def _install_packed(policy: nn.Module, state: dict, qc: dict, where: Path) -> None:
    """Replace each quantized layer of ``policy`` by a packed shell built from ``state``."""
    if not isinstance(qc, dict) or not isinstance(qc.get('layers'), dict):
        raise CheckpointError(f'{where}: quantization_config.layers must be an object')
    spec_q = QuantSpec.from_dict(qc['spec'])
    act = _act_spec(qc, where)
    if act is not None and act.rotation == 'quarot':  # the folded weights' final norm
        if not isinstance(policy, ResidualRotatable):
            raise CheckpointError(f'{where}: activation rotation quarot, but a '
                                  f'{_model_name(policy)} model has no residual stream to '
                                  'rotate; the file was not written by qvla quantize')
        policy.rotate_residual_(act.seed, fold=False)
    for name, info in qc['layers'].items():
        policy.set_submodule(name, _shell(state, name, info, spec_q,
                                          _layer_act(act, info, name, where)))
