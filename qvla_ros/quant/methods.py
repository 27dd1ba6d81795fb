# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Every quantization method behind one call: (policy, calibration, method, budget) -> plan.

A method is one class registered under its name (:data:`REGISTRY`); adding a method is one
subclass of :class:`QuantMethod` in this file (its algorithm in its own module). The
closed-loop comparison and ``qvla quantize --method`` use this, so every method is packed by
the same code (``apply.quantize_``) with the same quantizer spec and counted in real bytes.
Mixed-width methods allocate against the budget in real packed bytes (scales and zeros
included), so their bytes match a uniform method's at the same nominal width.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path
import time
from typing import cast, ClassVar, Dict, Optional, Tuple, Type

import torch
from torch import nn

from qvla_ros.core.layer_quant import LayerQuant
from qvla_ros.core.spec import QuantSpec
from qvla_ros.quant.act_clip import search_clips
from qvla_ros.quant.activation import ActSpec
from qvla_ros.quant.allocation import AllocationConfig, greedy_allocate
from qvla_ros.quant.allocation import row_cost
from qvla_ros.quant.apply import layer_bytes, quantize_
from qvla_ros.quant.artifacts import QuantPlan
from qvla_ros.quant.baselines.awq import awq_layer
from qvla_ros.quant.baselines.gptq import gptq_layer
from qvla_ros.quant.baselines.layerwise import layerwise_allocate
from qvla_ros.quant.baselines.release import release_allocate, release_proxy
from qvla_ros.quant.baselines.rtn import rtn
from qvla_ros.quant.baselines.smoothquant import smoothquant_layer
from qvla_ros.quant.calibration import LayerHessians, StreamedInputs
from qvla_ros.quant.policy import Batch, QuantPolicy
from qvla_ros.quant.prepared import prepare_, PreparedLinear
from qvla_ros.quant.rounding import layer_quant
from qvla_ros.quant.sensitivity import Executor, measure, Method, SensitivityConfig
from qvla_ros.quant.shard_store import fingerprint, ShardStore

UNIFORM_BITS = (2, 3, 4, 8)
SENS_BITS = (0, 2, 4, 8)


@dataclass(frozen=True)
class MethodConfig:
    """Which method at which budget, and how layer inputs are treated.

    act_bits: 8 or 4 quantizes every quantized layer's input per token too (W*A8, W*A4);
    rotation: 'hadamard' rotates those inputs (weights rotated to match) before rounding;
    act_clip: the fraction of a token's absmax its activation grid spans; clip_search: each
    layer's fraction is chosen on the calibration data instead (act_clip is then where the
    search starts: the ratio of the layers upstream while inputs are gathered).
    """

    method: str
    target_bits: float
    act_bits: Optional[int] = None
    rotation: Optional[str] = None
    act_clip: float = 1.0
    clip_search: bool = False
    candidates: Tuple[int, ...] = (0, 2, 4, 8, 16)
    max_prune_fraction: float = AllocationConfig.max_prune_fraction  # per layer
    projections: int = 8
    refine_fraction: float = 0.05
    spec: QuantSpec = field(default_factory=QuantSpec)

    def __post_init__(self):
        if self.method not in REGISTRY:
            raise ValueError(f'unknown method {self.method!r}; expected one of {METHODS}')
        if not 2.0 <= self.target_bits <= 16.0:
            raise ValueError(f'target_bits must be in [2, 16], got {self.target_bits}')
        if self.act_bits is None:
            object.__setattr__(self, 'act_bits', REGISTRY[self.method].act_bits)
        self.act  # raises ValueError naming a bad activation width, clip, rotation or search

    @property
    def act(self) -> Optional[ActSpec]:
        """Return the layer-input spec, or None when inputs stay as they are (FP, unrotated)."""
        if self.act_bits is None and self.rotation is None and not self.clip_search:
            return None
        return ActSpec(self.act_bits or 16, self.act_clip, self.rotation,
                       clip_search=self.clip_search)

    @property
    def uniform(self) -> bool:
        """True for methods that give every row the same width."""
        return REGISTRY[self.method].uniform

    @property
    def rounding(self) -> str:
        """How an allocating method rounds rows within their widths ('rtn' or 'gptq').

        Uniform methods ignore it: each baseline rounds its own way (``gptq`` with GPTQ).
        """
        return REGISTRY[self.method].rounding


def uniform_bits(target_bits: float) -> int:
    """Return the largest uniform width in UNIFORM_BITS that fits ``target_bits``."""
    fits = [b for b in UNIFORM_BITS if b <= target_bits + 1e-9]
    if not fits:
        raise ValueError(f'no uniform width <= {target_bits} bits; expected >= 2')
    return max(fits)


@dataclass
class Calibration:
    """What the methods measure once per model and reuse for every budget.

    scores: action-space sensitivity per method name ('hybrid' / 'exact'), each
    {layer: (len(SENS_BITS), N)}; inputs: per-layer input statistics (GPTQ, AWQ,
    SmoothQuant, release proxy), a ``StreamedInputs`` per layer-input spec (``act_key``:
    a rotated model has other inputs); seconds: wall time per step, where
    'inputs' sums the statistics passes (a sensitivity step includes any pass it triggers).
    shards: a folder where exact shards are kept as they finish (one store per sensitivity
    kind), so that a long exact measurement resumes; executor: where they run (e.g. Ray).
    """

    batch: Batch
    scores: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)
    inputs: Dict[str, StreamedInputs] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)
    shards: Optional[Path] = None
    executor: Optional[Executor] = None


def act_key(cfg: MethodConfig) -> str:
    """Return the name of the layer-input spec of ``cfg`` ('' for FP, unrotated inputs)."""
    return cfg.act.label() if cfg.act is not None else ''


def _sensitivity(policy, calib: Calibration, kind: str, cfg: MethodConfig):
    key = f'{kind}@refine={cfg.refine_fraction:g}'  # the refine ablation needs its own scores
    if cfg.rounding != 'rtn':
        key += f'@{cfg.rounding}'
    if act_key(cfg):
        key += f'@{act_key(cfg)}'  # measured with the inputs rotated and rounded
    if key not in calib.scores:
        hessians = _hessians(policy, calib, cfg)
        t0 = time.perf_counter()
        scfg = SensitivityConfig(bits=SENS_BITS, method=Method(kind),
                                 projections=cfg.projections,
                                 refine_fraction=cfg.refine_fraction, spec=cfg.spec,
                                 rounding=cfg.rounding)
        if calib.shards is None:
            calib.scores[key] = measure(policy, calib.batch, scfg, hessians)[0]
        else:
            job = fingerprint(policy, calib.batch, scfg)
            with ShardStore.open(Path(calib.shards) / key.replace('@', '-'), job) as store:
                calib.scores[key] = measure(policy, calib.batch, scfg, hessians, store,
                                            calib.executor)[0]
        calib.seconds[f'sensitivity_{key}'] = time.perf_counter() - t0
    return calib.scores[key]


def _inputs(policy, calib: Calibration, cfg: MethodConfig, key: Optional[str] = None):
    """Return the per-layer input statistics, gathered a byte-bounded group at a time.

    key: the layer-input spec they are kept under (default: ``cfg``'s).
    """
    key = act_key(cfg) if key is None else key
    if key not in calib.inputs:
        calib.inputs[key] = StreamedInputs(policy, calib.batch, timings=calib.seconds)
    else:
        calib.inputs[key].bind(policy)  # an earlier method may have quantized its model
    return calib.inputs[key]


def _search_clips(policy, calib: Calibration, cfg: MethodConfig,
                  layers: Dict[str, PreparedLinear]) -> Dict[str, float]:
    """Give each prepared layer the clip ratio its calibration inputs favour; return them.

    The inputs are gathered on the model before the search (every layer at ``cfg.act_clip``),
    all ratios are chosen, and only then set.
    """
    start = replace(cast(ActSpec, cfg.act), clip_search=False)
    t0 = time.perf_counter()
    stats = _inputs(policy, calib, cfg, start.label())
    clips = search_clips({k: m.weight for k, m in layers.items()}, stats, start)
    for k, m in layers.items():
        m.act = replace(m.act, clip_ratio=clips[k])
    calib.seconds[f'clip_search@{start.label()}'] = time.perf_counter() - t0
    return clips


def _hessians(policy, calib: Calibration, cfg: MethodConfig):
    """Return {layer: H (K, K)} computed when read, if ``cfg`` rounds with GPTQ; else None."""
    if cfg.rounding != 'gptq':
        return None
    return LayerHessians(_inputs(policy, calib, cfg))


def equal_bytes_target(layers, cfg: MethodConfig) -> float:
    """Return the byte-budget target (bits/param) that buys what a uniform method pays.

    A uniform width t costs every row t K / 8 bytes plus its scale, zero and index; a mixed
    plan gets the same total, so pruned rows hand their overhead back as payload bits.
    """
    params = sum(m.weight.numel() for m in layers.values())
    overhead = sum(m.out_features * (row_cost(2, m.in_features, 'bytes', cfg.spec.group_size)
                                     - 2 * m.in_features / 8) for m in layers.values())
    return cfg.target_bits + 8.0 * overhead / params


def _allocation(layers, cfg: MethodConfig) -> AllocationConfig:
    """Return the byte-budget allocation settings of an allocating method."""
    return AllocationConfig(target_bits=min(16.0, equal_bytes_target(layers, cfg)),
                            candidates=cfg.candidates, budget='bytes',
                            max_prune_fraction=cfg.max_prune_fraction,
                            group_size=cfg.spec.group_size)


@dataclass
class Run:
    """What a method reads while it plans one model: the layers, calibration and config."""

    policy: QuantPolicy
    layers: Dict[str, nn.Linear]
    calib: Calibration
    cfg: MethodConfig

    @property
    def in_features(self) -> Dict[str, int]:
        """Return {layer: K}."""
        return {k: m.in_features for k, m in self.layers.items()}

    def inputs(self) -> StreamedInputs:
        """Return the per-layer input statistics (computed once per calibration)."""
        return _inputs(self.policy, self.calib, self.cfg)

    def scores(self, kind: str) -> Dict[str, torch.Tensor]:
        """Return the action-space sensitivities {layer: (len(SENS_BITS), N)} of ``kind``."""
        return _sensitivity(self.policy, self.calib, kind, self.cfg)


class QuantMethod:
    """One method: how it picks each row's width (``bits``) or one width (``uniform_results``).

    uniform: every row gets the width ``uniform_bits(target)``; rounding: how an allocating
    method rounds a row within its width; act_bits: the activation width it implies;
    needs_data: whether it reads calibration data.
    """

    name: ClassVar[str] = ''
    uniform: ClassVar[bool] = False
    rounding: ClassVar[str] = 'rtn'
    act_bits: ClassVar[Optional[int]] = None
    needs_data: ClassVar[bool] = True

    def bits(self, run: Run) -> Dict[str, torch.Tensor]:
        """Return {layer: uint8 (N,)} widths within the budget (allocating methods)."""
        raise NotImplementedError(f'{self.name} gives every row one width')

    def uniform_results(self, run: Run, bits: int) -> Dict[str, LayerQuant]:
        """Return {layer: LayerQuant} with every row at ``bits`` (uniform methods)."""
        raise NotImplementedError(f'{self.name} allocates widths per row')


REGISTRY: Dict[str, QuantMethod] = {}


def register(cls: Type[QuantMethod]) -> Type[QuantMethod]:
    """Make ``cls`` available under ``cls.name``; return it (a class decorator)."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f'method name {cls.name!r} is empty or taken')
    REGISTRY[cls.name] = cls()
    return cls


@register
class QVLA(QuantMethod):
    """Action-space hybrid sensitivity (proxy + exact refinement), Eq. 8 greedy, RTN rows."""

    name = 'qvla'
    sensitivity = 'hybrid'

    def bits(self, run: Run) -> Dict[str, torch.Tensor]:
        """Allocate greedily on the action-space sensitivities (paper Eq. 8)."""
        return greedy_allocate(run.scores(self.sensitivity), SENS_BITS, run.in_features,
                               _allocation(run.layers, run.cfg)).bits


@register
class QVLAGPTQ(QVLA):
    """QVLA's allocation with GPTQ rounding inside each row's width (sensitivity on GPTQ)."""

    name = 'qvla-gptq'
    rounding = 'gptq'


@register
class QVLAExact(QVLA):
    """QVLA with the exact sensitivity of every row (slow; small models only)."""

    name = 'qvla-exact'
    sensitivity = 'exact'


@register
class QVLARelease(QuantMethod):
    """The official release: a Hessian proxy and an absolute-cost greedy."""

    name = 'qvla-release'

    def bits(self, run: Run) -> Dict[str, torch.Tensor]:
        """Allocate on the release's Hessian proxy."""
        stats = run.inputs()
        proxy = {k: release_proxy(m.weight, stats[k].hessian(), SENS_BITS)
                 for k, m in run.layers.items()}
        return release_allocate(proxy, SENS_BITS, run.cfg.target_bits, run.cfg.candidates)


@register
class Layerwise(QuantMethod):
    """One width per layer from the action-space sensitivity."""

    name = 'layerwise'

    def bits(self, run: Run) -> Dict[str, torch.Tensor]:
        """Allocate whole layers on the hybrid sensitivities."""
        return layerwise_allocate(run.scores('hybrid'), SENS_BITS, run.in_features,
                                  _allocation(run.layers, run.cfg)).bits


@register
class RTN(QuantMethod):
    """Uniform per-channel round-to-nearest (needs no data)."""

    name = 'rtn'
    uniform = True
    needs_data = False

    def uniform_results(self, run: Run, bits: int) -> Dict[str, LayerQuant]:
        """Round every row to nearest on its grid."""
        return rtn(run.layers, bits)


@register
class SmoothQuant(QuantMethod):
    """Uniform widths with SmoothQuant scales and 8-bit activations (W8A8, W4A8)."""

    name = 'smoothquant'
    uniform = True
    act_bits = 8

    def uniform_results(self, run: Run, bits: int) -> Dict[str, LayerQuant]:
        """Smooth each layer by its input absmax, then round."""
        stats = run.inputs()
        return {k: smoothquant_layer(m.weight, stats[k].absmax, bits)
                for k, m in run.layers.items()}


@register
class AWQ(QuantMethod):
    """Uniform widths with activation-aware scales."""

    name = 'awq'
    uniform = True

    def uniform_results(self, run: Run, bits: int) -> Dict[str, LayerQuant]:
        """Search each layer's AWQ scales on its input sample, then round."""
        stats = run.inputs()
        return {k: awq_layer(m.weight, stats[k].sample, bits, run.cfg.spec)
                for k, m in run.layers.items()}


@register
class GPTQ(QuantMethod):
    """Uniform widths with GPTQ rounding (act-order)."""

    name = 'gptq'
    uniform = True

    def uniform_results(self, run: Run, bits: int) -> Dict[str, LayerQuant]:
        """Round every layer with GPTQ's error feedback through its input Hessian."""
        stats, out = run.inputs(), {}
        for k, m in run.layers.items():  # one layer's Hessian (K, K) alive at a time
            rows = torch.full((m.out_features,), bits, dtype=torch.uint8)
            out[k] = gptq_layer(m.weight, stats[k].hessian(), rows, run.cfg.spec,
                                act_order=True)
        return out


METHODS = tuple(REGISTRY)


def plan_method(policy: QuantPolicy, calib: Calibration, cfg: MethodConfig):
    """Return (results {layer: LayerQuant}, plan, act spec or None) for ``cfg``.

    With an activation spec the policy is first prepared in place (``prepare_``): the plan
    is made on its rotated weights, with its inputs rotated and rounded as they will run.
    """
    act, clips = cfg.act, None
    if act is not None:
        prepared = prepare_(policy, act)
        if act.clip_search:
            clips = _search_clips(policy, calib, cfg, prepared)
    layers = policy.quantizable_layers()
    in_features = {k: m.in_features for k, m in layers.items()}
    method, run = REGISTRY[cfg.method], Run(policy, layers, calib, cfg)
    if method.uniform:
        results = method.uniform_results(run, uniform_bits(cfg.target_bits))
        candidates = tuple(sorted({uniform_bits(cfg.target_bits), *cfg.candidates}))
    else:
        bits = method.bits(run)
        hessians = _hessians(policy, calib, cfg)
        results = {k: layer_quant(layers[k].weight, b, cfg.spec, cfg.rounding,
                                  hessians[k] if hessians is not None else None)
                   for k, b in bits.items()}  # one layer's Hessian (K, K) alive at a time
        candidates = cfg.candidates
    plan = QuantPlan(cfg.spec, cfg.method + (f'-{act_key(cfg)}' if act else ''),
                     {k: r.bits for k, r in results.items()}, in_features, cfg.target_bits,
                     candidates=candidates, extra={'method_config': {
                         'method': cfg.method, 'target_bits': cfg.target_bits,
                         'act_bits': cfg.act_bits, 'rotation': cfg.rotation,
                         'act_clip': cfg.act_clip, 'refine_fraction': cfg.refine_fraction,
                         'projections': cfg.projections,
                         'max_prune_fraction': cfg.max_prune_fraction}})
    if cfg.rounding != 'rtn':  # absent means RTN, as in plans written before the option
        plan.extra['rounding'] = cfg.rounding
    if clips is not None:  # absent: one clip ratio for every layer (the plan id stays)
        plan.extra['method_config']['clip_search'] = True
        plan.extra['act_clips'] = clips
    return results, plan, act


def plan_bytes(policy, plan: QuantPlan) -> int:
    """Return the real bytes of the plan's layers in an already quantized ``policy``."""
    return sum(layer_bytes(policy.get_submodule(k)) for k in plan.bits)


def apply_method(policy: QuantPolicy, calib: Calibration, cfg: MethodConfig):
    """Quantize ``policy`` in place (packed) with ``cfg``; return (plan, act spec, bytes)."""
    results, plan, act = plan_method(policy, calib, cfg)
    layers = policy.quantizable_layers()  # prepared by plan_method when ``cfg.act`` is set
    quantize_(cast(nn.Module, policy), layers, results, plan.spec, mode='packed', act=act)
    return plan, act, plan_bytes(policy, plan)
