# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Each baseline beats RTN on the layer output where its paper says it should."""

import pytest
import torch
from torch import nn

from qvla_ros.core.layer_quant import LayerQuant
from qvla_ros.core.spec import QuantSpec
from qvla_ros.quant.activation import ActSpec
from qvla_ros.quant.apply import build_layer, layer_bytes, quantize_
from qvla_ros.quant.baselines.awq import awq_layer
from qvla_ros.quant.baselines.gptq import gptq_layer
from qvla_ros.quant.baselines.release import release_proxy
from qvla_ros.quant.baselines.rtn import rtn
from qvla_ros.quant.baselines.smoothquant import smoothquant_layer


def _err(layer, q, x):
    with torch.no_grad():
        return (layer(x) - q(x)).pow(2).mean().item()


def _linear(n=64, k=128, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(k, n)
    return lin


def test_smoothquant_wins_under_outlier_activations():
    lin = _linear()
    x = torch.randn(512, 128)
    x[:, :4] *= 50.0  # a few outlier channels, as in LLM activations
    act = ActSpec(8)
    rtn_q = build_layer(lin, rtn({'l': lin}, 8)['l'], QuantSpec(), 'fake', act)
    sq = smoothquant_layer(lin.weight, x.abs().amax(0), 8, alpha=0.5)
    sq_q = build_layer(lin, sq, QuantSpec(), 'fake', act)
    assert _err(lin, sq_q, x) < 0.5 * _err(lin, rtn_q, x)


def test_gptq_wins_on_correlated_inputs():
    lin = _linear()
    mix = torch.randn(128, 128) * 0.3 + torch.eye(128)
    x = torch.randn(2048, 16) @ torch.randn(16, 128) + 0.1 * torch.randn(2048, 128) @ mix
    H = 2 * x.double().T @ x.double() / x.shape[0]
    for bits in (3, 4):
        b = torch.full((64,), bits, dtype=torch.uint8)
        g = build_layer(lin, gptq_layer(lin.weight, H, b), QuantSpec(), 'fake')
        r = build_layer(lin, LayerQuant(b), QuantSpec(), 'fake')
        assert _err(lin, g, x) < 0.7 * _err(lin, r, x)
        g_ao = build_layer(lin, gptq_layer(lin.weight, H, b, act_order=True), QuantSpec(),
                           'fake')
        assert _err(lin, g_ao, x) < _err(lin, r, x)


def test_awq_wins_with_salient_channels():
    lin = _linear()
    x = torch.randn(1024, 128)
    x[:, 10:14] *= 20.0  # salient input channels
    b = torch.full((64,), 3, dtype=torch.uint8)
    a = build_layer(lin, awq_layer(lin.weight, x, 3), QuantSpec(), 'fake')
    r = build_layer(lin, LayerQuant(b), QuantSpec(), 'fake')
    assert _err(lin, a, x) < 0.8 * _err(lin, r, x)


def test_gptq_mixed_bits_keeps_16_and_prunes_0():
    lin = _linear()
    x = torch.randn(256, 128)
    H = 2 * x.double().T @ x.double() / 256
    bits = torch.tensor([16, 0, 4, 2] * 16, dtype=torch.uint8)
    lq = gptq_layer(lin.weight, H, bits)
    assert torch.equal(lq.weight[0], lin.weight[0].detach())
    assert torch.equal(lq.weight[1], torch.zeros(128))


@pytest.mark.parametrize('maker', ['rtn', 'gptq', 'awq', 'smooth'])
def test_fake_and_packed_agree(maker):
    lin = _linear(48, 64)
    x = torch.randn(300, 64)
    bits = torch.tensor([8, 4, 2, 0] * 12, dtype=torch.uint8)
    lq = {'rtn': lambda: LayerQuant(bits),
          'gptq': lambda: gptq_layer(lin.weight, 2 * x.double().T @ x.double() / 300, bits),
          'awq': lambda: awq_layer(lin.weight, x, 4),
          'smooth': lambda: smoothquant_layer(lin.weight, x.abs().amax(0), 4)}[maker]()
    fake = build_layer(lin, lq, QuantSpec(), 'fake')
    packed = build_layer(lin, lq, QuantSpec(), 'packed', dense_dtype=torch.float32)
    with torch.no_grad():
        ref, out = fake(x), packed(x)
    # packed stores fp16 scales and (for AWQ/SmoothQuant) an fp16 input scale
    assert ((out - ref).abs().max() / ref.abs().max()) < 5e-3
    assert layer_bytes(packed) < 0.3 * 48 * 64 * 2 + 64 * 2 + 48 * 16


def test_release_proxy_ignores_the_action_map():
    lin = _linear()
    x = torch.randn(256, 128)
    H = 2 * x.double().T @ x.double() / 256
    p = release_proxy(lin.weight, H, [0, 2, 4, 8])
    assert p.shape == (4, 64) and (p[0] > p[1]).all() and (p[2] > p[3]).all()


def test_quantize_checks_names_and_sizes():
    model = nn.Sequential(nn.Linear(8, 4))
    layers = {'0': model[0]}
    with pytest.raises(ValueError, match='does not have'):
        quantize_(model, layers, {'1': LayerQuant(torch.full((4,), 4))}, QuantSpec())
    with pytest.raises(ValueError, match='3 bits for 4 rows'):
        quantize_(model, layers, {'0': LayerQuant(torch.full((3,), 4))}, QuantSpec())
