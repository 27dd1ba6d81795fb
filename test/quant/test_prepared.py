# Copyright 2026 qvla_ros authors. Apache-2.0.
"""A model prepared for activation quantization: rotation exact, sensitivity on what runs."""

import pytest
import torch

from qvla_ros.quant.activation import ActSpec
from qvla_ros.quant.calibration import collect_inputs
from qvla_ros.quant.prepared import prepare_, PreparedLinear
from qvla_ros.quant.sensitivity import exact_sensitivity, proxy_sensitivity, SensitivityConfig


def test_a_rotation_alone_keeps_the_actions(tiny_policy, calib_batch):
    policy, batch = tiny_policy(torch.float64), calib_batch(4, torch.float64)
    with torch.no_grad():
        before = policy.action_tensor(batch)
    layers = prepare_(policy, ActSpec(16, rotation='hadamard'))
    assert all(isinstance(m, PreparedLinear) for m in policy.quantizable_layers().values())
    assert set(layers) == set(policy.quantizable_layers())
    with torch.no_grad():
        after = policy.action_tensor(batch)
    assert torch.allclose(before, after, atol=1e-12)
    with pytest.raises(ValueError, match='already prepared'):
        prepare_(policy, ActSpec(4))


def test_statistics_see_the_rotated_input_before_rounding(tiny_policy, calib_batch):
    policy, batch = tiny_policy(), calib_batch(4)
    plain = collect_inputs(policy, batch)['vision.0']
    prepare_(policy, ActSpec(4, rotation='hadamard'))
    rotated = collect_inputs(policy, batch)['vision.0']  # the first layer: no rounding upstream
    layer = policy.quantizable_layers()['vision.0']
    assert torch.allclose(rotated.xtx, layer.rotation(layer.rotation(plain.xtx).T),
                          rtol=1e-4, atol=1e-3)  # R X^T X R^T


def test_exact_sensitivity_of_a_w4a4_model_equals_brute_force(tiny_policy, calib_batch,
                                                              brute_sensitivity):
    policy, batch = tiny_policy(torch.float64), calib_batch(4, torch.float64)
    prepare_(policy, ActSpec(4, 0.9, 'hadamard'))
    cfg = SensitivityConfig(bits=(2, 4), method='exact', rows_per_pass=5, samples_per_pass=4)
    scores = exact_sensitivity(policy, batch, cfg)
    for name in ('vision.0', 'language.2'):
        for bi, b in enumerate(cfg.bits):
            for row in (0, 9):
                # a row's change enters through its output; downstream layers round their
                # (changed) inputs again, which the perturbed forward reproduces exactly
                ref = brute_sensitivity(policy, batch, name, row, b)
                assert scores[name][bi, row].item() == pytest.approx(ref, rel=1e-6), (name, b)


def test_the_proxy_reaches_layers_upstream_of_4_bit_activations(tiny_policy, calib_batch):
    policy, batch = tiny_policy(), calib_batch(4)
    prepare_(policy, ActSpec(4, rotation='hadamard'))
    scores = proxy_sensitivity(policy, batch, SensitivityConfig(bits=(2,), method='proxy'))
    assert all(float(s.sum()) > 0 for s in scores.values())  # rounding passes gradients


def test_quarot_needs_a_model_with_a_residual_stream(tiny_policy):
    with pytest.raises(ValueError, match='rotation quarot needs a model whose residual stream'):
        prepare_(tiny_policy(), ActSpec(4, rotation='quarot'))
