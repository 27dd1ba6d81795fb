# Copyright 2026 qvla_ros authors. Apache-2.0.
"""A model prepared for activation quantization: every quantizable linear sees Q_a(R x).

Calibration and sensitivity run on the model as it will run: each quantizable linear is
replaced (same name, still an ``nn.Linear``) by a :class:`PreparedLinear` whose weight is
W R^T (rotated columns, folded offline) and whose input is rotated (R x) and fake-quantized
per token. Methods then read and round the rotated weights, and the exact sensitivity adds
the output change x_q . (Q(w_c) - w_c) with the input the weight really meets.
"""

from dataclasses import replace
from typing import Dict, FrozenSet, Optional

import torch
from torch import nn
from torch.nn import functional as F

from qvla_ros.quant.activation import ActSpec, fake_quant_tokens
from qvla_ros.quant.policy import QuantPolicy, ResidualRotatable
from qvla_ros.quant.rotation import Rotation


class PreparedLinear(nn.Linear):
    """y = Q_a(R x) (W R^T)^T + b: a linear on rotated, per-token quantized inputs."""

    def __init__(self, linear: nn.Linear, act: ActSpec):
        super().__init__(linear.in_features, linear.out_features, linear.bias is not None,
                         device=linear.weight.device, dtype=linear.weight.dtype)
        self.act = act
        self.rotation = (Rotation(linear.in_features, act.seed)
                         if act.rotation is not None else None)
        with torch.no_grad():
            w = linear.weight.detach()
            self.weight.copy_(self.rotation(w.double()).to(w.dtype)
                              if self.rotation is not None else w)  # W R^T (N, K)
            if linear.bias is not None:
                self.bias.copy_(linear.bias)

    def rotated_input(self, x: torch.Tensor) -> torch.Tensor:
        """Return R x (..., K): the input before activation rounding (what statistics see)."""
        return self.rotation(x) if self.rotation is not None else x

    def weight_input(self, x: torch.Tensor) -> torch.Tensor:
        """Return Q_a(R x) (..., K): the input the weight is multiplied with."""
        return fake_quant_tokens(self.rotated_input(x), self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the layer output (..., N)."""
        return F.linear(self.weight_input(x), self.weight, self.bias)


def residual_readers(policy: QuantPolicy, act: ActSpec) -> FrozenSet[str]:
    """Rotate the policy's residual stream if ``act`` asks for QuaRot; return its readers.

    The readers' inputs are rotated by the folded weights upstream, so they take no online
    rotation; with any other spec nothing is rotated here and no layer is a reader.
    """
    if act.rotation != 'quarot':
        return frozenset()
    if not isinstance(policy, ResidualRotatable):
        raise ValueError(f'rotation quarot needs a model whose residual stream can be rotated '
                         f'(qvla-ref); {type(policy).__name__} has none: use rotation hadamard')
    return policy.rotate_residual_(act.seed)


def layer_spec(act: ActSpec, name: str, readers: FrozenSet[str]) -> ActSpec:
    """Return one layer's spec: QuaRot's readers rotate nothing online, the rest Hadamard."""
    if act.rotation != 'quarot':
        return act
    return replace(act, rotation=None if name in readers else 'hadamard')


def prepare_(policy: QuantPolicy, act: ActSpec) -> Dict[str, PreparedLinear]:
    """Replace every quantizable linear of ``policy`` by a PreparedLinear, in place.

    Return the new layers {name: layer}. A policy prepared already is refused (rotating twice
    would rotate the weights twice).
    """
    layers = policy.quantizable_layers()
    done = [k for k, m in layers.items() if isinstance(m, PreparedLinear)]
    if done:
        raise ValueError(f'layers already prepared for activation quantization: {done[:3]}')
    readers = residual_readers(policy, act)
    out = {}
    for name, lin in layers.items():
        out[name] = PreparedLinear(lin, layer_spec(act, name, readers))
        policy.set_submodule(name, out[name])  # type: ignore[attr-defined]
    return out


def layer_act(layer: nn.Module) -> Optional[ActSpec]:
    """Return the activation spec a prepared layer was built with, else None."""
    return layer.act if isinstance(layer, PreparedLinear) else None


def weight_input(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Return the input ``layer``'s weight meets for a forward-hook input x (..., K)."""
    return layer.weight_input(x) if isinstance(layer, PreparedLinear) else x


def stat_input(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Return the input statistics describe (rotated, not yet rounded) for hook input x."""
    return layer.rotated_input(x) if isinstance(layer, PreparedLinear) else x
