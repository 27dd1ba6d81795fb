# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Rounding within a row's width: GPTQ rows are independent, and beat RTN on H-weighted error."""

import pytest
import torch

from qvla_ros.core.primitives import fake_quant_rows
from qvla_ros.quant.rounding import check_rounding, layer_quant, rounded_delta


def _layer(n=24, k=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g, dtype=torch.float64)
    x = torch.randn(256, k, generator=g, dtype=torch.float64) @ torch.randn(
        k, k, generator=g, dtype=torch.float64)  # correlated inputs, as in real layers
    return w, 2.0 * x.T @ x / x.shape[0]  # H = 2/n X^T X


@pytest.mark.parametrize('seed', [0, 1])
def test_gptq_row_does_not_depend_on_the_other_rows_widths(seed):
    w, h = _layer(seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    bits = torch.tensor([0, 2, 3, 4, 8, 16])[torch.randint(0, 6, (w.shape[0],), generator=g)]
    mixed = layer_quant(w, bits, rounding='gptq', hessian=h).weight  # (N, K)
    for b in (0, 2, 3, 4, 8, 16):
        rows = (bits == b).nonzero().squeeze(1)
        uniform = w + rounded_delta(w, b, rounding='gptq', hessian=h)
        torch.testing.assert_close(mixed[rows], uniform[rows], rtol=0, atol=1e-12)
        sub = w[rows] + rounded_delta(w[rows], b, rounding='gptq', hessian=h)  # a shard
        torch.testing.assert_close(sub, uniform[rows], rtol=0, atol=1e-12)


@pytest.mark.parametrize('bits', [2, 3, 4])
def test_gptq_lowers_the_output_error_rtn_leaves(bits):
    w, h = _layer()
    err = {r: float(torch.einsum('nk,kj,nj->', d, h, d))  # tr(dW H dW^T): output MSE
           for r in ('rtn', 'gptq')
           for d in [rounded_delta(w, bits, rounding=r, hessian=h)]}
    assert err['gptq'] < 0.9 * err['rtn'], err


def test_rtn_is_the_paper_quantizer_and_zero_bits_remove_the_row():
    w, h = _layer()
    torch.testing.assert_close(rounded_delta(w, 4), fake_quant_rows(w, torch.full((24,), 4)) - w)
    for r in ('rtn', 'gptq'):
        torch.testing.assert_close(rounded_delta(w, 0, rounding=r, hessian=h), -w)
        assert not rounded_delta(w, 16, rounding=r, hessian=h).any()
    assert layer_quant(w, torch.full((24,), 4)).weight is None  # RTN: packer rounds itself


def test_low_precision_weights_keep_exact_grid_values():
    w, h = _layer()
    bits = torch.full((24,), 8)
    low = layer_quant(w.bfloat16(), bits, rounding='gptq', hessian=h).weight
    assert low.dtype == torch.float32  # 8-bit grid values do not fit bf16's mantissa
    torch.testing.assert_close(low, layer_quant(w.bfloat16().float(), bits, rounding='gptq',
                                                hessian=h).weight.float(), rtol=0, atol=0)
    assert rounded_delta(w.bfloat16(), 4, rounding='gptq', hessian=h).dtype == torch.bfloat16


def test_errors_name_what_was_expected():
    w, h = _layer()
    with pytest.raises(ValueError, match='expected one of'):
        check_rounding('nearest')
    with pytest.raises(ValueError, match='input Hessian'):
        rounded_delta(w, 4, rounding='gptq')
    with pytest.raises(ValueError, match=r'must be \(32, 32\)'):
        layer_quant(w, torch.full((24,), 4), rounding='gptq', hessian=h[:8, :8])
