# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Action-space sensitivity: exact equals brute force, proxy tracks exact, shards merge."""

import copy

import pytest
import torch

from qvla_ros.quant.artifacts import SensitivityFile
from qvla_ros.quant.calibration import collect_inputs
from qvla_ros.quant.rounding import rounded_delta
from qvla_ros.quant.sensitivity import (exact_sensitivity, hybrid_sensitivity, make_shards,
                                        measure, merge_shards, proxy_sensitivity, run_shard,
                                        SensitivityConfig, spearman)


def test_exact_equals_brute_force(tiny_policy, calib_batch, brute_sensitivity):
    policy = tiny_policy(torch.float64)
    batch = calib_batch(6, torch.float64)
    cfg = SensitivityConfig(method='exact', rows_per_pass=7, samples_per_pass=4)
    scores = exact_sensitivity(policy, batch, cfg)
    for name in policy.quantizable_layers():
        for bi, b in enumerate(cfg.bits):
            for row in (0, 3, 17):
                ref = brute_sensitivity(policy, batch, name, row, b)
                got = scores[name][bi, row].item()
                assert got == pytest.approx(ref, rel=1e-5, abs=1e-30), (name, b, row)


def test_gptq_rounding_measures_the_gptq_row(tiny_policy, calib_batch):
    policy = tiny_policy(torch.float64)
    batch = calib_batch(6, torch.float64)
    hessians = {k: v.hessian() for k, v in collect_inputs(policy, batch).items()}
    cfg = SensitivityConfig(method='exact', bits=(2, 4), rounding='gptq', rows_per_pass=7)
    scores = exact_sensitivity(policy, batch, cfg, hessians)
    rtn = exact_sensitivity(policy, batch, SensitivityConfig(method='exact', bits=(2, 4)))
    name = 'vision.0'
    for bi, b in enumerate(cfg.bits):
        delta = rounded_delta(policy.quantizable_layers()[name].weight, b, cfg.spec, 'gptq',
                              hessians[name])
        for row in (0, 5, 30):
            q = copy.deepcopy(policy)
            q.quantizable_layers()[name].weight.data[row] += delta[row]
            with torch.no_grad():
                ref = ((q.action_tensor(batch) - policy.action_tensor(batch)) ** 2).sum(
                    (1, 2)).mean().item()
            assert scores[name][bi, row].item() == pytest.approx(ref, rel=1e-5, abs=1e-30)
        assert not torch.allclose(scores[name][bi], rtn[name][bi])  # a different quantizer
    proxy = SensitivityConfig(method='proxy', projections=2, rounding='gptq')
    collected, _ = measure(policy, batch, proxy)  # collects the Hessians itself
    given, _ = measure(policy, batch, proxy, hessians)
    for k in given:
        torch.testing.assert_close(collected[k], given[k])


def test_sensitivity_decreases_with_bits(tiny_policy, calib_batch):
    policy = tiny_policy()
    scores = exact_sensitivity(policy, calib_batch(), SensitivityConfig(method='exact'))
    for s in scores.values():  # bits (0, 2, 4, 8): mean error must fall as bits rise
        means = s.mean(1).tolist()
        assert means == sorted(means, reverse=True)


def test_proxy_tracks_exact_and_is_unbiased(tiny_policy, calib_batch):
    policy = tiny_policy()
    batch = calib_batch(16)
    ex = exact_sensitivity(policy, batch, SensitivityConfig(method='exact'))
    pr = proxy_sensitivity(policy, batch, SensitivityConfig(method='proxy', projections=64))
    for name in ex:
        for bi in (1, 2, 3):  # 2, 4, 8 bits: small perturbations, first order holds
            assert spearman(ex[name][bi], pr[name][bi]) > 0.9
            ratio = (pr[name][bi].sum() / ex[name][bi].sum()).item()
            assert 0.8 < ratio < 1.25


def test_hybrid_refines_top_rows_exactly(tiny_policy, calib_batch):
    policy = tiny_policy()
    batch = calib_batch()
    cfg = SensitivityConfig(method='hybrid', projections=4, refine_fraction=0.2)
    scores, refined = hybrid_sensitivity(policy, batch, cfg)
    ex = exact_sensitivity(policy, batch, SensitivityConfig(method='exact'))
    total = sum(int(m.sum()) for m in refined.values())
    rows = sum(s.shape[1] for s in scores.values())
    assert total == pytest.approx(0.2 * rows * len(cfg.bits), abs=len(cfg.bits))
    for name in scores:
        mask = refined[name]
        assert torch.allclose(scores[name][mask], ex[name][mask], rtol=1e-4, atol=1e-12)


def test_shards_run_independently_and_merge(tiny_policy, calib_batch):
    policy = tiny_policy()
    batch = calib_batch()
    cfg = SensitivityConfig(method='exact', bits=(2, 4))
    sizes = {k: m.out_features for k, m in policy.quantizable_layers().items()}
    shards = make_shards(sizes, cfg.bits, 10)
    results = {s: run_shard(policy, batch, s, cfg) for s in reversed(shards)}
    merged = merge_shards(results, sizes, cfg.bits)
    full = exact_sensitivity(policy, batch, cfg)
    for k in full:
        assert torch.allclose(merged[k], full[k], rtol=1e-5)
    del results[shards[0]]
    with pytest.raises(ValueError, match='do not cover every row'):
        merge_shards(results, sizes, cfg.bits)


def test_sensitivity_file_roundtrip_and_validation(tmp_path):
    scores = {'a.b': torch.rand(2, 5)}
    f = SensitivityFile((2, 4), 'exact', 8, scores, {'a.b': 16})
    f.save(tmp_path / 's.safetensors')
    back = SensitivityFile.load(tmp_path / 's.safetensors')
    assert back.bits == (2, 4) and torch.equal(back.scores['a.b'], scores['a.b'])
    with pytest.raises(ValueError, match=r'must be \(2, out_features'):
        SensitivityFile((2, 4), 'exact', 8, {'a.b': torch.rand(3, 5)}, {'a.b': 16}).save(
            tmp_path / 'bad.safetensors')
    with pytest.raises(ValueError, match='differ from layers with in_features'):
        SensitivityFile((2,), 'exact', 8, {'a': torch.rand(1, 5)}, {'b': 1}).validate()


def test_config_validation():
    with pytest.raises(ValueError, match='16 bits'):
        SensitivityConfig(bits=(4, 16))
    with pytest.raises(ValueError, match='refine_fraction'):
        SensitivityConfig(refine_fraction=1.5)
    with pytest.raises(ValueError, match='unknown rounding'):
        SensitivityConfig(rounding='nearest')


def test_spearman():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 2.0])) == \
        pytest.approx(1.0)


@pytest.mark.parametrize('rounding', ['rtn', 'gptq'])
def test_proxy_scores_do_not_depend_on_the_delta_budget(tiny_policy, calib_batch, rounding):
    policy, batch = tiny_policy(torch.float64), calib_batch(6, torch.float64)
    kw = dict(method='proxy', projections=3, samples_per_pass=4, rounding=rounding)
    whole = proxy_sensitivity(policy, batch, SensitivityConfig(**kw))
    grouped = proxy_sensitivity(policy, batch, SensitivityConfig(**kw, max_delta_bytes=1))
    assert set(whole) == set(grouped) == set(policy.quantizable_layers())
    for name in whole:  # one layer's deltas at a time, the same projections v
        assert torch.allclose(grouped[name], whole[name], rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match='max_delta_bytes'):
        SensitivityConfig(max_delta_bytes=0)


def test_exact_sensitivity_of_a_two_camera_tower_equals_brute_force(brute_sensitivity):
    from dataclasses import replace
    from qvla_ros.models.reference import build_reference, CONFIGS
    policy = build_reference(replace(CONFIGS['tiny'], cameras=('agentview', 'wrist')), 3)
    policy = policy.double()
    g = torch.Generator().manual_seed(0)
    c = policy.config
    batch = {'image': torch.rand(3, 2, 3, c.image_size, c.image_size, generator=g,
                                 dtype=torch.float64),
             'tokens': torch.randint(0, c.vocab, (3, c.max_text_tokens), generator=g),
             'mask': torch.ones(3, c.max_text_tokens, dtype=torch.float64),
             'proprio': torch.randn(3, c.proprio_dim, generator=g, dtype=torch.float64)}
    vision = next(k for k in policy.quantizable_layers() if k.startswith('vision'))
    cfg = SensitivityConfig(bits=(2,), method='exact', rows_per_pass=3, samples_per_pass=2)
    shard = make_shards({vision: 4}, cfg.bits, 4)[0]
    got = run_shard(policy, batch, shard, cfg)  # the tower sees B x 2 images per replica
    for row in range(4):
        ref = brute_sensitivity(policy, batch, vision, row, 2)
        assert got[row].item() == pytest.approx(ref, rel=1e-6), row
