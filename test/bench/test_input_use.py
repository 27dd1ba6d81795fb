# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The input-use study: an input with zero weight has zero use, the others do not."""

import dataclasses
from pathlib import Path
import sys

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.input_use import frames, input_use  # noqa: E402
from qvla_ros.models.reference import build_reference, CONFIGS  # noqa: E402

TINY = dataclasses.replace(CONFIGS['tiny'], image_size=32, patch_size=16, proprio_dim=6)


def test_frames_are_the_recorded_steps_spread_over_the_dataset(wide_dataset):
    obs = frames(wide_dataset, 6)
    assert len(obs) == 6
    assert {o.instruction for o in obs} == {'go left', 'go right'}
    assert all(o.proprio.shape == (6,) and o.images['front'].shape == (32, 32, 3) for o in obs)


def test_an_input_with_zero_weight_has_zero_use(wide_dataset):
    policy = build_reference(TINY, seed=1).float()
    with torch.no_grad():
        policy.proprio_proj.weight[:, 5] = 0.0
        policy.proprio_proj.weight[:, :5] *= 50.0  # make the used inputs matter
    res = input_use(policy, frames(wide_dataset, 6))
    assert len(res['use']) == 6 and res['use'][5] == 0.0
    assert min(res['use'][:5]) > 0.0
    assert res['column_norm'][5] == 0.0 and min(res['column_norm'][:5]) > 0.0
    assert set(res['by_instruction']) == {'go left', 'go right'}
    assert all(v[5] == 0.0 for v in res['by_instruction'].values())


def test_a_policy_without_proprio_is_refused(wide_dataset):
    with pytest.raises(ValueError, match='expects a qvla-ref policy'):
        input_use(torch.nn.Linear(2, 2), frames(wide_dataset, 2))
