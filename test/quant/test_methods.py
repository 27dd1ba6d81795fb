# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Every method packs through the same path, meets its byte budget and keeps actions close."""

import pytest
import torch

from qvla_ros.models.checkpoint import load_policy
from qvla_ros.quant.calibration_batch import calibration_batch
from qvla_ros.quant.methods import (apply_method, Calibration, MethodConfig, METHODS,
                                    uniform_bits)


@pytest.fixture(scope='module')
def calib():
    policy = load_policy('ref-tiny:1')
    return Calibration(calibration_batch(policy, None, 6, 6, 1))


def calib_shape(calib):
    return load_policy('ref-tiny:1').action_tensor(calib.batch).shape


def _packed(method, bits, calib, act=None):
    policy = load_policy('ref-tiny:1')
    plan, _, packed = apply_method(policy, calib, MethodConfig(method, bits, act))
    with torch.no_grad():
        out = policy.action_tensor(calib.batch)
    return plan, packed, out


@pytest.mark.parametrize('method,rotation', [
    ('rtn', 'hadamard'), ('gptq', 'hadamard'), ('smoothquant', 'hadamard'),
    ('qvla', 'hadamard'), ('rtn', 'quarot'), ('qvla', 'quarot')])
def test_w4a4_with_a_rotation_packs_saves_and_loads_the_same_policy(method, rotation, calib,
                                                                    tmp_path):
    from qvla_ros.models.checkpoint import save_quantized
    from qvla_ros.models.residual_rotation import READERS
    from qvla_ros.quant.apply import QuantizedLinear
    policy = load_policy('ref-tiny:1')
    cfg = MethodConfig(method, 4.0, 4, rotation=rotation, act_clip=0.9)
    plan, act, packed = apply_method(policy, calib, cfg)
    assert plan.method == f'{method}-a4-clip0.9-{rotation}' and act == cfg.act
    layers = {k: policy.get_submodule(k) for k in plan.bits}
    assert all(isinstance(m, QuantizedLinear) for m in layers.values())
    online = {k for k, m in layers.items() if m.rotation is not None}
    readers = {k for k in layers if k.startswith('language.') and k.endswith(READERS)}
    # QuaRot: the readers of the folded residual stream rotate nothing online
    assert online == set(layers) - (readers if rotation == 'quarot' else set()) and readers
    with torch.no_grad():
        out = policy.action_tensor(calib.batch)
    save_quantized(policy, plan, tmp_path / 'q', act)
    again = load_policy(str(tmp_path / 'q'))
    with torch.no_grad():
        assert torch.equal(again.action_tensor(calib.batch), out)
    if method != 'smoothquant':  # the rotation's signs cost K / 8 bytes per layer
        plain = _packed(method, 4.0, calib)[1]
        signs = sum((m.in_features + 7) // 8
                    for m in load_policy('ref-tiny').quantizable_layers().values())
        assert packed <= plain * 1.005 + signs


def test_searched_clip_ratios_are_chosen_per_layer_and_travel_with_the_checkpoint(
        calib, tmp_path):
    import json
    from qvla_ros.models.checkpoint import CheckpointError, save_quantized
    from qvla_ros.quant.activation import CLIP_GRID
    policy = load_policy('ref-tiny:1')
    cfg = MethodConfig('gptq', 4.0, 4, rotation='hadamard', act_clip=0.9, clip_search=True)
    plan, act, _ = apply_method(policy, calib, cfg)
    clips = plan.extra['act_clips']
    assert plan.method == 'gptq-a4-clipsearch0.9-hadamard' and set(clips) == set(plan.bits)
    assert set(clips.values()) <= set(CLIP_GRID) and len(set(clips.values())) > 1, clips
    assert {k: policy.get_submodule(k).act.clip_ratio for k in plan.bits} == clips
    assert 'a4-clip0.9-hadamard' in calib.inputs  # the search reads the unsearched model's
    with torch.no_grad():
        out = policy.action_tensor(calib.batch)
    save_quantized(policy, plan, tmp_path / 'q', act)
    again = load_policy(str(tmp_path / 'q'))
    assert {k: again.get_submodule(k).act.clip_ratio for k in plan.bits} == clips
    with torch.no_grad():
        assert torch.equal(again.action_tensor(calib.batch), out)
    config = json.loads((tmp_path / 'q' / 'config.json').read_text())
    del next(iter(config['quantization_config']['layers'].values()))['act_clip']
    (tmp_path / 'q' / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match='expected act_clip, a number in'):
        load_policy(str(tmp_path / 'q'))


def test_input_statistics_and_scores_are_kept_per_input_spec(calib):
    _packed('qvla', 4.0, calib)
    _packed('gptq', 4.0, calib)
    for method in ('qvla', 'gptq'):
        apply_method(load_policy('ref-tiny:1'), calib,
                     MethodConfig(method, 4.0, 4, rotation='hadamard'))
    assert {'hybrid@refine=0.05', 'hybrid@refine=0.05@a4-hadamard'} <= set(calib.scores)
    assert {'', 'a4-hadamard'} <= set(calib.inputs)  # a rotated model has other inputs


def test_uniform_bits_and_config_errors():
    assert [uniform_bits(b) for b in (8, 4, 3, 2.5, 2)] == [8, 4, 3, 2, 2]
    with pytest.raises(ValueError, match='unknown method'):
        MethodConfig('nope', 4)
    with pytest.raises(ValueError, match='target_bits'):
        MethodConfig('rtn', 1.5)
    assert MethodConfig('smoothquant', 8).act_bits == 8
    with pytest.raises(ValueError, match='activation bits must be one of'):
        MethodConfig('rtn', 4, 5)
    with pytest.raises(ValueError, match='activation rotation must be'):
        MethodConfig('rtn', 4, 4, rotation='givens')
    with pytest.raises(ValueError, match='clip search needs quantized activations'):
        MethodConfig('rtn', 4, rotation='hadamard', clip_search=True)
    assert MethodConfig('rtn', 4).act is None
    assert MethodConfig('rtn', 4, rotation='hadamard').act.bits == 16


@pytest.fixture(scope='module')
def rtn4_bytes(calib):
    return _packed('rtn', 4.0, calib)[1]


@pytest.mark.parametrize('method', [m for m in METHODS if m != 'qvla-exact'])
def test_every_method_packs_within_budget(method, calib, rtn4_bytes):
    plan, packed, out = _packed(method, 4.0, calib)
    # equal real bytes: nothing spends more than uniform 4-bit RTN (input scales of
    # SmoothQuant / AWQ are stored in fp16 and counted on top)
    extra = 2 * sum(m.in_features for m in load_policy('ref-tiny').quantizable_layers().values())
    assert packed <= rtn4_bytes * 1.005 + (extra if method in ('smoothquant', 'awq') else 0)
    assert torch.isfinite(out).all() and out.shape == calib_shape(calib)
    assert plan.method.startswith(method)


def test_qvla_bytes_follow_the_budget_and_beat_rtn_actions(calib):
    fp_policy = load_policy('ref-tiny:1')
    with torch.no_grad():
        fp = fp_policy.action_tensor(calib.batch)
    sizes = [_packed('qvla', b, calib)[1] for b in (8.0, 4.0, 2.5)]
    assert sizes[0] > sizes[1] > sizes[2]
    _, rtn4, _ = _packed('rtn', 4.0, calib)
    _, qvla4, _ = _packed('qvla', 4.0, calib)
    assert qvla4 <= rtn4 * 1.02  # the byte budget is the uniform width's payload
    err = {m: float((_packed(m, 3.0, calib)[2] - fp).abs().mean()) for m in ('qvla', 'rtn')}
    assert err['qvla'] < 0.8 * err['rtn'], err  # action-space allocation at equal bytes


@pytest.mark.parametrize('cap', [0.0, 0.25])
def test_prune_cap_bounds_each_layer_and_is_recorded_in_the_plan(calib, cap):
    policy = load_policy('ref-tiny:1')
    plan, _, _ = apply_method(policy, calib, MethodConfig('qvla', 2.5, max_prune_fraction=cap))
    assert plan.extra['method_config']['max_prune_fraction'] == cap
    for name, bits in plan.bits.items():
        assert int((bits == 0).sum()) <= int(cap * bits.numel()), name


def test_qvla_gptq_rounds_the_allocated_rows_with_gptq(calib):
    fp_policy = load_policy('ref-tiny:1')
    with torch.no_grad():
        fp = fp_policy.action_tensor(calib.batch)
    plan, packed, out = _packed('qvla-gptq', 3.0, calib)
    rtn_plan, rtn_packed, rtn_out = _packed('qvla', 3.0, calib)
    assert plan.extra['rounding'] == 'gptq' and 'rounding' not in rtn_plan.extra
    assert packed <= rtn_packed * 1.01  # same byte budget
    err = {'gptq': float((out - fp).abs().mean()), 'rtn': float((rtn_out - fp).abs().mean())}
    assert err['gptq'] < 0.8 * err['rtn'], err
    assert any(k.endswith('@gptq') for k in calib.scores)  # measured on the GPTQ deltas


def test_streamed_statistics_give_the_same_quantized_model(calib):
    from qvla_ros.quant.calibration import StreamedInputs
    streamed = Calibration(calib.batch)
    streamed.inputs = {'': StreamedInputs(load_policy('ref-tiny:1'), calib.batch, max_bytes=1)}
    for method in ('gptq', 'awq', 'qvla-gptq', 'qvla-release'):  # in turn, as the bench does
        plan, packed, out = _packed(method, 3.0, streamed)
        ref_plan, ref_packed, ref_out = _packed(method, 3.0, calib)
        assert plan.plan_id == ref_plan.plan_id and packed == ref_packed, method
        assert torch.allclose(out, ref_out, rtol=1e-5, atol=1e-6), method
    held = streamed.inputs['']
    assert held.passes > len(held.groups) > 1  # groups were re-read


def test_a_registered_method_is_usable_everywhere_at_once(calib, monkeypatch):
    from qvla_ros.cli.qvla import build_parser
    from qvla_ros.quant import methods
    monkeypatch.setattr(methods, 'REGISTRY', dict(methods.REGISTRY))

    @methods.register
    class HalfRTN(methods.QuantMethod):
        """Round-to-nearest one width below the budget's."""

        name = 'half-rtn'
        uniform = True
        needs_data = False

        def uniform_results(self, run, bits):
            return methods.rtn(run.layers, max(2, bits // 2))
    plan, packed, out = _packed('half-rtn', 8.0, calib)
    assert plan.method == 'half-rtn' and set(plan.histogram()) >= {4}
    assert plan.histogram()[4] == sum(plan.histogram().values())  # every row at 8 // 2
    args = build_parser().parse_args(['quantize', '--model', 'toy', '--method', 'half-rtn',
                                      '--bits', '8', '--out', 'x'])
    assert args.method == 'half-rtn'
    with pytest.raises(ValueError, match='empty or taken'):
        methods.register(HalfRTN)
