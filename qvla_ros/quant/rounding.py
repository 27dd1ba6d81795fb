# Copyright 2026 qvla_ros authors. Apache-2.0.
"""How a row is rounded onto its grid once its bit-width is chosen: RTN or GPTQ.

The bit-width of each row comes from the allocation; the rounding decides which codes the
row gets on that width's grid (docs/method.md, rounding):

* ``rtn``: round to nearest on the row's own grid (the paper's and the release's quantizer);
* ``gptq``: the same grid, with GPTQ's column-by-column error feedback through the layer's
  input Hessian H = 2/n X^T X (``baselines.gptq``).

GPTQ updates each row only with that row's own rounding errors (the update of column i is
err_i (N,) outer H^-1 row), so a row's GPTQ codes at b bits do not depend on the widths of the
other rows. The per-row delta of a uniform-b GPTQ pass is therefore exactly the perturbation
that row gets in any mixed plan, and the action-space sensitivity (paper Eq. 4) measured with
it stays the sensitivity of the quantizer that is applied.
"""

from typing import Optional

import torch

from qvla_ros.core.layer_quant import LayerQuant
from qvla_ros.core.primitives import fake_quant_rows
from qvla_ros.core.spec import check_bits, QuantSpec
from qvla_ros.quant.baselines.gptq import gptq, gptq_layer

ROUNDINGS = ('rtn', 'gptq')


def check_rounding(rounding: str) -> str:
    """Return ``rounding`` if known, else raise ValueError naming the choices."""
    if rounding not in ROUNDINGS:
        raise ValueError(f'unknown rounding {rounding!r}; expected one of {ROUNDINGS}')
    return rounding


def _need_hessian(rounding: str, hessian: Optional[torch.Tensor], k: int) -> None:
    if rounding != 'gptq':
        return
    if hessian is None:
        raise ValueError('gptq rounding needs the layer input Hessian (K, K); collect it with '
                         'qvla_ros.quant.calibration.collect_inputs')
    if tuple(hessian.shape) != (k, k):
        raise ValueError(f'gptq rounding: Hessian must be ({k}, {k}), got '
                         f'{tuple(hessian.shape)}')


def rounded_delta(weight: torch.Tensor, bits: int, spec: QuantSpec = QuantSpec(),
                  rounding: str = 'rtn', hessian: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Return Q_b(W) - W (N, K) with every row at ``bits`` (0: -W, the row removed)."""
    bits, rounding = check_bits(bits), check_rounding(rounding)
    full = torch.full((weight.shape[0],), bits, dtype=torch.int64)
    if rounding == 'rtn' or bits in (0, 16):
        return fake_quant_rows(weight, full, spec) - weight.detach()
    _need_hessian(rounding, hessian, weight.shape[1])
    assert hessian is not None  # _need_hessian raised otherwise
    q = gptq(weight, hessian, full, spec, act_order=True)[0]
    return (q - weight.detach().to(q.dtype)).to(weight.dtype)


def layer_quant(weight: torch.Tensor, bits: torch.Tensor, spec: QuantSpec = QuantSpec(),
                rounding: str = 'rtn', hessian: Optional[torch.Tensor] = None) -> LayerQuant:
    """Return the LayerQuant of one layer with ``bits`` (N,) per row and ``rounding``."""
    bits = torch.as_tensor(bits).reshape(-1).to(torch.uint8)
    if check_rounding(rounding) == 'rtn':
        return LayerQuant(bits)
    _need_hessian(rounding, hessian, weight.shape[1])
    assert hessian is not None  # _need_hessian raised otherwise
    return gptq_layer(weight, hessian, bits, spec, act_order=True)
