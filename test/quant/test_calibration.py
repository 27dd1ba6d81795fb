# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Calibration statistics: exact over every row, sampled uniformly, streamed group by group
with the same values as one pass over all layers."""

import pytest
import torch

from qvla_ros.quant.calibration import (byte_groups, collect_hessians, collect_inputs,
                                        LayerHessians, stat_bytes, StreamedInputs)


def _layer_input(policy, batch, lin):
    xs = []
    handle = lin.register_forward_hook(lambda m, a, o: xs.append(a[0].detach()))
    with torch.no_grad():
        policy.action_tensor(batch)
    handle.remove()
    return xs[0].reshape(-1, xs[0].shape[-1])  # (T, K)


def test_collect_inputs_gathers_every_layer(tiny_policy, calib_batch):
    policy, batch = tiny_policy(), calib_batch(12)
    stats = collect_inputs(policy, batch, max_rows=5, samples_per_pass=4)
    layers = policy.quantizable_layers()
    assert set(stats) == set(layers)
    for name, lin in layers.items():
        st = stats[name]
        assert st.sample.shape == (5, lin.in_features)
        x = _layer_input(policy, batch, lin).double()
        assert st.count == x.shape[0]
        # float32 layers give batch-size-dependent last bits: passes of 4 vs one pass of 12
        assert torch.allclose(st.hessian(), 2 * x.T @ x / x.shape[0], rtol=1e-5, atol=1e-6)
        assert torch.allclose(st.absmax, x.abs().amax(0).float(), rtol=1e-5, atol=1e-6)
        # every sampled row is one of the layer's input rows, none twice
        dist = torch.cdist(st.sample.double(), x)  # (5, T)
        nearest = dist.argmin(1)
        assert dist.min(1).values.max() < 1e-4 and nearest.unique().numel() == 5


def test_the_sample_does_not_depend_on_passes_or_grouping(tiny_policy, calib_batch):
    policy = tiny_policy(torch.float64)
    batch = calib_batch(12, torch.float64)
    names = list(policy.quantizable_layers())
    one = collect_inputs(policy, batch, max_rows=7, samples_per_pass=12)
    split = collect_inputs(policy, batch, max_rows=7, samples_per_pass=5)
    alone = collect_inputs(policy, batch, max_rows=7, layers=names[1:2])
    assert set(alone) == {names[1]}
    for name in names:
        assert torch.allclose(one[name].sample, split[name].sample)
    assert torch.equal(alone[names[1]].sample, one[names[1]].sample)
    assert torch.equal(alone[names[1]].xtx, one[names[1]].xtx)
    with pytest.raises(ValueError, match='not quantizable layers'):
        collect_inputs(policy, batch, layers=['nope'])


def test_all_rows_are_kept_below_max_rows(tiny_policy, calib_batch):
    policy, batch = tiny_policy(), calib_batch(3)
    stats = collect_inputs(policy, batch, max_rows=100000)
    for name, lin in policy.quantizable_layers().items():
        x = _layer_input(policy, batch, lin)
        assert torch.allclose(stats[name].sample, x, rtol=1e-5, atol=1e-6)  # in order


def test_byte_groups_are_consecutive_and_bounded():
    sizes = {'a': 3, 'b': 3, 'c': 5, 'd': 9, 'e': 1}
    assert byte_groups(sizes, 6) == [['a', 'b'], ['c'], ['d'], ['e']]  # d alone, oversized
    assert byte_groups(sizes, 100) == [['a', 'b', 'c', 'd', 'e']]
    assert byte_groups({}, 1) == []
    with pytest.raises(ValueError, match='max_bytes must be >= 1'):
        byte_groups(sizes, 0)
    assert stat_bytes(4, 10) == 8 * 16 + 4 * 11 * 4


def test_streamed_inputs_hold_one_group_and_match_one_pass(tiny_policy, calib_batch):
    policy, batch = tiny_policy(), calib_batch(6)
    names = list(policy.quantizable_layers())
    full = collect_inputs(policy, batch)
    timings = {}
    stream = StreamedInputs(policy, batch, max_bytes=1, timings=timings)  # a layer per group
    assert stream.groups == [[k] for k in names] and list(stream) == names
    assert stream.passes == 0  # nothing is gathered before it is read
    for i, name in enumerate(names):
        st = stream[name]
        assert stream.passes == i + 1
        assert torch.equal(st.xtx, full[name].xtx) and st.count == full[name].count
        assert torch.equal(st.sample, full[name].sample)
        assert stream[name] is st  # the held group is not gathered again
    stream[names[0]]
    assert stream.passes == len(names) + 1  # an earlier group was let go
    assert timings['inputs'] > 0
    assert stream.get('nope') is None and len(stream) == len(names)
    whole = StreamedInputs(policy, batch)  # the default budget holds this model at once
    assert len(whole.groups) == 1
    for name in names:
        whole[name]
    assert whole.passes == 1


def test_collect_hessians_computes_each_layer_when_read(tiny_policy, calib_batch):
    policy, batch = tiny_policy(), calib_batch(6)
    stats = collect_inputs(policy, batch)
    lazy = LayerHessians(stats)
    assert set(lazy) == set(stats) and len(lazy) == len(stats)
    for name, st in stats.items():
        assert torch.equal(lazy[name], st.hessian())
        assert lazy[name] is not lazy[name]  # not kept: one layer's (K, K) alive at a time
    assert lazy.get('missing') is None
    for budget in (1, 1 << 30):
        direct = collect_hessians(policy, batch, max_bytes=budget)
        assert all(torch.equal(direct[k], lazy[k]) for k in stats)
