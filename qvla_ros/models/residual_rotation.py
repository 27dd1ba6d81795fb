# Copyright 2026 qvla_ros authors. Apache-2.0.
"""QuaRot's residual-stream rotation of a Llama backbone, folded into its weights offline.

Every token h (D,) of the residual stream is replaced by R h (R the randomized Hadamard
rotation of :mod:`qvla_ros.quant.rotation`, orthogonal). The model computes the same function:
- RMSNorm commutes with R once its scale gamma is folded into the linears that read it
  (rms(R h) = rms(h)): a reader W (N, D) becomes W diag(gamma) R^T and the norm's gamma 1;
- a writer into the stream (o_proj, down_proj, and the model's producers of the input
  embeddings) W (D, K) becomes R W, its bias R b; an embedding row e becomes R e;
- the final norm undoes R after normalizing (:class:`UnrotatingRMSNorm`), so whatever reads
  the backbone's output is unchanged.
The readers (q, k, v, gate, up) then see rotated, unscaled inputs and need no online
rotation; o_proj and down_proj read the attention and MLP interiors, which R does not reach,
and keep their own online rotation.
"""

from typing import FrozenSet, Iterable, Tuple

import torch
from torch import nn

from qvla_ros.quant.rotation import Rotation

READERS = ('self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'mlp.gate_proj',
           'mlp.up_proj')  # per decoder layer: linears whose input is a normed residual token
WRITERS = ('self_attn.o_proj', 'mlp.down_proj')  # per decoder layer: linears adding to it


class UnrotatingRMSNorm(nn.Module):
    """gamma * R^T (h / rms(h)): Llama's final RMSNorm on a rotated stream, unrotated."""

    def __init__(self, hidden: int, eps: float, seed: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.variance_epsilon = eps
        self.rotation = Rotation(hidden, seed)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Return the normalized, unrotated states (..., D)."""
        dtype = h.dtype
        x = h.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * self.rotation.inverse(x).to(dtype)


@torch.no_grad()
def rotate_reader_(linear: nn.Linear, gamma: torch.Tensor, rot: Rotation) -> None:
    """W (N, D) <- W diag(gamma) R^T: a linear reading a normed token of the stream."""
    w = linear.weight
    w.copy_(rot(w.double() * gamma.double()).to(w.dtype))


@torch.no_grad()
def rotate_writer_(linear: nn.Linear, rot: Rotation) -> None:
    """W (D, K) <- R W and b <- R b: a linear whose output is added to (or starts) the stream."""
    w = linear.weight
    w.copy_(rot(w.double().t()).t().to(w.dtype))
    if linear.bias is not None:
        linear.bias.copy_(rot(linear.bias.double()).to(linear.bias.dtype))


@torch.no_grad()
def rotate_rows_(table: torch.Tensor, rot: Rotation) -> None:
    """E (V, D) <- E R^T: every row (an embedding of a stream token) rotated."""
    table.copy_(rot(table.double()).to(table.dtype))


def install_unrotating_norm(llama: nn.Module, seed: int) -> UnrotatingRMSNorm:
    """Replace ``llama.norm`` by an UnrotatingRMSNorm (gamma kept); return the new module."""
    old = llama.norm
    if isinstance(old, UnrotatingRMSNorm):
        raise ValueError('the residual stream is rotated already; rotating it twice would '
                         'leave the weights and the final norm out of step')
    new = UnrotatingRMSNorm(old.weight.numel(), old.variance_epsilon, seed).to(old.weight)
    with torch.no_grad():
        new.weight.copy_(old.weight)
    llama.norm = new
    return new


def rotate_llama_(llama: nn.Module, seed: int, prefix: str, fold: bool = True,
                  writers: Iterable[nn.Linear] = (), rows: Iterable[torch.Tensor] = ()
                  ) -> Tuple[Rotation, FrozenSet[str]]:
    """Rotate the residual stream of a LlamaModel ``llama`` in place (module docstring).

    writers / rows: the model's own producers of the input embeddings (linears, and tables
    of embedding rows besides ``llama.embed_tokens``). fold=False installs only the final
    norm (a checkpoint whose weights are rotated already is then loaded into it).
    Return (R, names of the reader linears under ``prefix``).
    """
    rot = install_unrotating_norm(llama, seed).rotation
    readers = frozenset(f'{prefix}.layers.{i}.{r}' for i in range(len(llama.layers))
                        for r in READERS)
    if not fold:
        return rot, readers
    rotate_rows_(llama.embed_tokens.weight, rot)
    for table in rows:
        rotate_rows_(table, rot)
    for lin in writers:
        rotate_writer_(lin, rot)
    for layer in llama.layers:
        for norm, names in ((layer.input_layernorm, READERS[:3]),
                            (layer.post_attention_layernorm, READERS[3:])):
            for name in names:
                rotate_reader_(layer.get_submodule(name), norm.weight, rot)
            with torch.no_grad():
                norm.weight.fill_(1.0)
        for name in WRITERS:
            rotate_writer_(layer.get_submodule(name), rot)
    return rot, readers
