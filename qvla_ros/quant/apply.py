# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Apply quantization results to a model: the one place modules are swapped.

Every method (QVLA plans and all baselines) arrives as {layer: LayerQuant}. Two modes:

* ``fake``: the layer keeps a dense weight holding the dequantized values (analysis);
* ``packed``: the layer becomes a :class:`~qvla_ros.kernels.linear.MixedBitLinear` built from
  exactly (weight, bits per row, quantizer spec[, grid]) -- the hand-off to the kernels.

An input rotation R (layers of a model prepared by ``qvla_ros.quant.prepared``), an input
scale s (SmoothQuant/AWQ) and activation fake quantization (A8, A4) wrap the layer in a
:class:`QuantizedLinear` that computes inner(Q_a(R x / s)); s (fp16) and R's signs (bits)
are stored and counted. On a GPU, rotations of Sylvester blocks run with s and Q_a in one
Triton launch (:mod:`qvla_ros.kernels.triton_hadamard`), and rounded tokens of a packed layer
enter it as int8 codes for its int8 tensor-core path; elsewhere all of it runs in plain torch.
"""

from typing import cast, Dict, Mapping, Optional

import torch
from torch import nn

from qvla_ros.core.layer_quant import LayerQuant
from qvla_ros.core.primitives import fake_quant_rows, token_codes
from qvla_ros.core.spec import QuantSpec
from qvla_ros.kernels.dispatch import Backend, choose_backend
from qvla_ros.kernels.format import PackedLayout
from qvla_ros.kernels.linear import MixedBitLinear
from qvla_ros.quant.activation import ActSpec, fake_quant_tokens
from qvla_ros.quant.artifacts import QuantPlan
from qvla_ros.quant.prepared import layer_act, PreparedLinear
from qvla_ros.quant.rotation import Rotation
from qvla_ros.quant.rounding import check_rounding, layer_quant

MODES = ('fake', 'packed')


class QuantizedLinear(nn.Module):
    """inner(Q_a(R x * inv_scale)): rotation, scaling and activation rounding around a layer."""

    def __init__(self, inner: nn.Module, inv_scale: Optional[torch.Tensor] = None,
                 act: Optional[ActSpec] = None, rotation: Optional[Rotation] = None):
        super().__init__()
        self.inner = inner
        self.act = act if act is not None and act.quantized else None  # 16 bits: not rounded
        self.rotation = rotation
        self.register_buffer('inv_scale', None if inv_scale is None else inv_scale.half())

    def fused(self, x: torch.Tensor) -> bool:
        """Return True when one Triton launch rotates and rounds x (GPU, Sylvester blocks)."""
        rot = self.rotation
        if rot is None or rot.m != 1 or choose_backend(x.device.type) is not Backend.TRITON:
            return False
        from qvla_ros.kernels.triton_hadamard import supports
        return supports(rot.block)

    def int8_tokens(self, x: torch.Tensor) -> bool:
        """Return True when rounded tokens enter the packed layer as int8 codes (GPU, W4A8)."""
        return (self.act is not None and isinstance(self.inner, MixedBitLinear)
                and choose_backend(x.device.type, self.inner.backend) is Backend.TRITON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the quantized layer's output for x (..., K)."""
        inv = cast(Optional[torch.Tensor], self.inv_scale)  # a buffer, or None
        act = self.act
        if self.fused(x):
            from qvla_ros.kernels.triton_hadamard import rotate_quant_tokens
            rot = cast(Rotation, self.rotation)
            if act is not None and self.int8_tokens(x):
                codes, scale = rotate_quant_tokens(x, rot.signs(), rot.block, inv, act.bits,
                                                   act.clip_ratio, codes=True)
                return cast(MixedBitLinear, self.inner).forward_codes(codes, scale, x.dtype)
            x = rotate_quant_tokens(x, rot.signs(), rot.block, inv, act.bits if act else 16,
                                    act.clip_ratio if act else 1.0)
            return self.inner(x)
        if self.rotation is not None:
            x = self.rotation(x)
        if inv is not None:
            x = x * inv.to(x.dtype)
        if act is not None and self.int8_tokens(x):
            codes, scale = token_codes(x, act.bits, act.clip_ratio)  # (..., K), (..., 1)
            return cast(MixedBitLinear, self.inner).forward_codes(codes, scale[..., 0], x.dtype)
        if act is not None:
            x = fake_quant_tokens(x, act)
        return self.inner(x)


def plan_rounding(plan: QuantPlan) -> str:
    """Return how the plan's rows are rounded ('rtn' when the plan does not say: older plans)."""
    return check_rounding(plan.extra.get('rounding', 'rtn'))


def results_from_plan(plan: QuantPlan, layers: Optional[Dict[str, nn.Linear]] = None,
                      hessians: Optional[Mapping[str, torch.Tensor]] = None
                      ) -> Dict[str, LayerQuant]:
    """Return the LayerQuants for the bits of ``plan`` with the plan's rounding.

    RTN (the default; plans without a ``rounding`` entry) needs nothing else; GPTQ rounding
    needs the model's ``layers`` and their input Hessians {layer: (K, K)}.
    """
    rounding = plan_rounding(plan)
    if rounding == 'rtn':
        return {k: LayerQuant(b) for k, b in plan.bits.items()}
    if layers is None or hessians is None:
        raise ValueError(f'plan {plan.plan_id} rounds rows with {rounding}: quantizing it '
                         'needs calibration data for the layer input Hessians (give --dataset '
                         'DIR)')
    return {k: layer_quant(layers[k].weight, b, plan.spec, rounding, hessians[k])
            for k, b in plan.bits.items()}


def check_plan_matches(layers: Dict[str, nn.Linear], plan: QuantPlan) -> None:
    """Raise ValueError naming every layer or shape that differs between model and plan."""
    problems = []
    missing = sorted(set(plan.bits) - set(layers))
    if missing:
        problems.append(f'plan layers not in the model: {missing[:5]}')
    for name, bits in plan.bits.items():
        if name in layers:
            lin = layers[name]
            if (bits.numel(), plan.in_features[name]) != (lin.out_features, lin.in_features):
                problems.append(f'{name}: plan has ({bits.numel()}, {plan.in_features[name]}), '
                                f'model has ({lin.out_features}, {lin.in_features})')
    if problems:
        raise ValueError('the plan does not match the model: ' + '; '.join(problems))


def build_layer(linear: nn.Linear, lq: LayerQuant, spec: QuantSpec, mode: str,
                act: Optional[ActSpec] = None,
                dense_dtype: torch.dtype = torch.float16) -> nn.Module:
    """Return the quantized replacement of one linear.

    A :class:`PreparedLinear` brings its own rotation and activation spec (its weight is
    rotated already); ``act`` applies to plain linears.
    """
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    weight = (lq.weight if lq.weight is not None else linear.weight).detach()
    if lq.input_scale is not None:
        weight = weight * lq.input_scale.to(weight)  # W diag(s)
    inner: nn.Module
    if mode == 'fake':
        dense = nn.Linear(linear.in_features, linear.out_features, linear.bias is not None)
        dense = dense.to(device=weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            dense.weight.copy_(fake_quant_rows(weight, lq.bits.long(), spec, lq.qparams))
            if linear.bias is not None:
                dense.bias.copy_(linear.bias)
        inner = dense
    else:
        layout = PackedLayout.from_float(weight, lq.bits, spec, linear.bias, dense_dtype,
                                         qparams=lq.qparams)
        inner = MixedBitLinear(layout, spec)
    act = layer_act(linear) or act
    rotation = linear.rotation if isinstance(linear, PreparedLinear) else None
    rounded = act is not None and act.quantized  # a rotation alone leaves activations FP
    if lq.input_scale is None and not rounded and rotation is None:
        return inner
    inv = None if lq.input_scale is None else 1.0 / lq.input_scale
    return QuantizedLinear(inner, inv, act, rotation)


def quantize_(model: nn.Module, layers: Dict[str, nn.Linear], results: Dict[str, LayerQuant],
              spec: QuantSpec, mode: str = 'packed', act: Optional[ActSpec] = None,
              dense_dtype: torch.dtype = torch.float16) -> nn.Module:
    """Replace every layer named in ``results`` inside ``model``, in place; return model."""
    unknown = sorted(set(results) - set(layers))
    if unknown:
        raise ValueError(f'results name layers the model does not have: {unknown[:5]}')
    for name, lq in results.items():
        if lq.bits.numel() != layers[name].out_features:
            raise ValueError(f'{name}: {lq.bits.numel()} bits for '
                             f'{layers[name].out_features} rows')
        model.set_submodule(name, build_layer(layers[name], lq, spec, mode, act, dense_dtype))
    return model


def layer_bytes(module: nn.Module) -> int:
    """Return the real bytes of a quantized replacement (packed weights + overhead)."""
    total = 0
    for mod in module.modules():
        if isinstance(mod, MixedBitLinear):
            total += mod.packed_bytes()
        elif isinstance(mod, QuantizedLinear) and mod.inv_scale is not None:
            inv = cast(torch.Tensor, mod.inv_scale)
            total += inv.numel() * inv.element_size()
        elif isinstance(mod, Rotation):
            total += mod.sign_bits.numel()  # packed signs; the Hadamard blocks are rebuilt
        elif isinstance(mod, nn.Linear):
            total += sum(p.numel() * 2 for p in mod.parameters())  # counted as fp16
    return total
