# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Per-token activation grids: error bounds, clipping, the straight-through gradient."""

import pytest
import torch

from qvla_ros.quant.activation import ActSpec, fake_quant_tokens


@pytest.mark.parametrize('bits', [4, 8])
def test_each_token_is_rounded_within_half_a_step_of_its_own_grid(bits):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 48, generator=gen) * torch.logspace(-2, 2, 10)[:, None]
    q = fake_quant_tokens(x, ActSpec(bits))
    step = x.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)  # (10, 1): per token
    assert ((q - x).abs() <= step / 2 + 1e-6 * step).all()
    assert len(torch.unique(q[0])) <= 2 ** bits


def test_clipping_saturates_the_largest_entries_and_refines_the_rest():
    x = torch.tensor([[10.0, 1.04, -0.52, 0.3, 0.1]])
    full, clipped = fake_quant_tokens(x, ActSpec(4)), fake_quant_tokens(x, ActSpec(4, 0.5))
    assert clipped[0, 0] == pytest.approx(5.0)  # 0.5 x absmax: the outlier saturates
    assert (clipped - x)[0, 1:].abs().sum() < (full - x)[0, 1:].abs().sum()


def test_sixteen_bits_leave_inputs_alone_and_gradients_pass_straight_through():
    x = torch.randn(3, 8, requires_grad=True)
    assert fake_quant_tokens(x, ActSpec(16)) is x
    fake_quant_tokens(x, ActSpec(4)).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_bad_specs_name_what_was_expected():
    with pytest.raises(ValueError, match=r'one of \(4, 8, 16\)'):
        ActSpec(3)
    with pytest.raises(ValueError, match=r'clip_ratio must be in \(0, 1\]'):
        ActSpec(4, 1.5)
    with pytest.raises(ValueError, match="one of \\('hadamard', 'quarot'\\)"):
        ActSpec(4, rotation='random')
    with pytest.raises(ValueError, match='unknown activation spec fields'):
        ActSpec.from_dict({'bits': 4, 'groups': 2})
    spec = ActSpec(4, 0.9, 'hadamard', 2)
    assert ActSpec.from_dict(spec.to_dict()) == spec and spec.label() == 'a4-clip0.9-hadamard2'


def test_a_clip_search_names_its_start_and_needs_rounded_inputs():
    assert ActSpec(4, 0.9, clip_search=True).label() == 'a4-clipsearch0.9'
    assert ActSpec(8, clip_search=True, rotation='hadamard').label() == 'a8-clipsearch-hadamard'
    assert 'clip_search' not in ActSpec(4).to_dict()  # files older readers still read
    assert ActSpec.from_dict(ActSpec(4, clip_search=True).to_dict()).clip_search
    with pytest.raises(ValueError, match='clip search needs quantized activations'):
        ActSpec(16, clip_search=True)
