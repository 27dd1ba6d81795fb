# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Greedy Eq. 8 allocation, the release's allocator, the Lagrangian bound and plan files."""

import numpy as np
import pytest
import torch

from qvla_ros.core.spec import QuantSpec
from qvla_ros.quant.allocation import (AllocationConfig, greedy_allocate,
                                       greedy_allocate_heap, lagrangian_lower_bound, row_cost)
from qvla_ros.quant.artifacts import QuantPlan
from qvla_ros.quant.baselines.layerwise import layerwise_allocate
from qvla_ros.quant.baselines.release import release_allocate

# Two equal-width channels, candidates {4, 8, 16}, target 6 bits (the case).
# A: 96 at 8 bits, 98 at 4 bits; B: 10 at 8 bits, 60 at 4 bits. Rows of scores = bits (4, 8).
EQ8 = {'L': torch.tensor([[98.0, 60.0], [96.0, 10.0]])}


@pytest.mark.parametrize('alloc', [greedy_allocate, greedy_allocate_heap])
def test_eq8_incremental_cost(alloc):
    out = alloc(EQ8, [4, 8], {'L': 16}, AllocationConfig(target_bits=6, candidates=(4, 8, 16)))
    assert out.bits['L'].tolist() == [4, 8]  # A's 8 -> 4 increment is tiny
    assert out.total_sensitivity == pytest.approx(108.0)


def test_release_absolute_cost_differs():
    bits = release_allocate(EQ8, [4, 8], target_bits=6, candidates=(4, 8, 16))
    assert bits['L'].tolist() == [8, 4]  # total 96 + 60 = 156


def _instance(seed, layers=4, rows=120):
    rng = np.random.default_rng(seed)
    scores, kin = {}, {}
    for i in range(layers):
        base = rng.lognormal(0, 2, (rows, 1))
        s = np.concatenate([base * rng.lognormal(m, 1, (rows, 1)) for m in (3, 1, -1, -4)], 1)
        scores[f'l{i}'] = torch.tensor(s.T, dtype=torch.float32)  # bits (0, 2, 4, 8)
        kin[f'l{i}'] = int(rng.integers(4, 40)) * 8
    return scores, kin


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('target', [2.5, 3.0, 4.0, 8.0])
def test_budget_met_within_one_step_and_heap_agrees(seed, target):
    scores, kin = _instance(seed)
    cfg = AllocationConfig(target_bits=target, max_prune_fraction=0.3)
    fast = greedy_allocate(scores, [0, 2, 4, 8], kin, cfg)
    heap = greedy_allocate_heap(scores, [0, 2, 4, 8], kin, cfg)
    assert all(torch.equal(fast.bits[k], heap.bits[k]) for k in scores)
    params = sum(s.shape[1] * kin[k] for k, s in scores.items())
    biggest_step = max(kin.values()) * 8  # 16 -> 8 on the widest row
    assert fast.achieved_bits <= target + 1e-9
    assert fast.achieved_bits > target - biggest_step / params
    for k, b in fast.bits.items():
        assert int((b == 0).sum()) <= int(0.3 * b.numel())
    lower = lagrangian_lower_bound(scores, [0, 2, 4, 8], kin, cfg)
    assert lower <= fast.total_sensitivity + 1e-6


def test_prune_threshold_and_unreachable_target():
    scores, kin = _instance(0)
    cfg = AllocationConfig(target_bits=2.5, prune_threshold=0.0, max_prune_fraction=1.0)
    out = greedy_allocate(scores, [0, 2, 4, 8], kin, cfg)
    assert all(int((b == 0).sum()) == 0 for b in out.bits.values())
    with pytest.raises(ValueError, match='not reachable'):
        greedy_allocate(scores, [0, 2, 4, 8], kin,
                        AllocationConfig(target_bits=1.0, candidates=(2, 4, 8, 16)))
    with pytest.raises(ValueError, match='have no sensitivity'):
        greedy_allocate(scores, [2, 4, 8], kin, AllocationConfig())


def test_byte_budget_counts_overhead():
    assert row_cost(4, 4096, 'bytes', None) == 4096 / 2 + 4 + 4
    assert row_cost(0, 4096, 'bytes', None) == 0
    scores, kin = _instance(1)
    out = greedy_allocate(scores, [0, 2, 4, 8], kin, AllocationConfig(budget='bytes'))
    used = sum(row_cost(int(b), kin[k], 'bytes', None) for k, bits in out.bits.items()
               for b in bits)
    params = sum(s.shape[1] * kin[k] for k, s in scores.items())
    assert used <= 4.0 * params / 8 + 1e-6
    assert out.achieved_bits < 4.0  # overhead costs nominal bits


def test_layerwise_gives_one_width_per_layer():
    scores, kin = _instance(2)
    out = layerwise_allocate(scores, [0, 2, 4, 8], kin, AllocationConfig(target_bits=4.0))
    assert all(b.unique().numel() == 1 for b in out.bits.values())
    assert out.achieved_bits <= 4.0


def test_plan_roundtrip_and_validation(tmp_path):
    scores, kin = _instance(0)
    out = greedy_allocate(scores, [0, 2, 4, 8], kin, AllocationConfig())
    plan = QuantPlan(QuantSpec(), 'qvla', out.bits, kin, 4.0)
    plan.save(tmp_path)
    back = QuantPlan.load(tmp_path)
    assert all(torch.equal(back.bits[k], plan.bits[k]) for k in plan.bits)
    assert back.achieved_bits() == pytest.approx(out.achieved_bits)
    assert back.plan_id == plan.plan_id and back.spec == plan.spec
    text = (tmp_path / 'plan.json').read_text()
    (tmp_path / 'plan.json').write_text(text.replace('"out_features": 120', '"out_features": 7',
                                                     1))
    with pytest.raises(ValueError, match=r'must be uint8 \(7,\)'):
        QuantPlan.load(tmp_path)
    (tmp_path / 'plan.json').write_text(text.replace('"qvla-plan"', '"other"'))
    with pytest.raises(ValueError, match="format must be 'qvla-plan'"):
        QuantPlan.load(tmp_path)
    with pytest.raises(ValueError, match='plan.json does not exist'):
        QuantPlan.load(tmp_path / 'nowhere')


def test_prune_cap_default_is_shared_by_the_methods():
    from qvla_ros.quant.methods import MethodConfig
    assert MethodConfig('qvla', 4.0).max_prune_fraction == AllocationConfig().max_prune_fraction
    assert AllocationConfig().max_prune_fraction <= 0.1  # 0.5 doubled the action deviation
