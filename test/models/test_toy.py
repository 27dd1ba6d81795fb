# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The toy policy honours the policy interface."""

import numpy as np
import torch

from qvla_ros.core.types import Observation
from qvla_ros.models.toy import build_toy_policy


def _obs(text='push the red block'):
    rng = np.random.default_rng(0)
    return Observation({'cam': rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)}, text)


def test_predict_shape_and_determinism():
    a = build_toy_policy(3).predict(_obs())
    b = build_toy_policy(3).predict(_obs())
    assert a.actions.shape == (8, 7) and a.actions.dtype == np.float32
    np.testing.assert_array_equal(a.actions, b.actions)
    assert np.all(np.abs(a.actions) <= 0.05 + 1e-6)


def test_instruction_matters_and_gradients_flow():
    policy = build_toy_policy(0)
    assert not np.allclose(policy.predict(_obs('push left')).actions,
                           policy.predict(_obs('pick up the green cube')).actions)
    batch = policy.make_batch(_obs())
    out = policy.action_tensor(batch)
    out.sum().backward()
    grads = [m.weight.grad for m in policy.quantizable_layers().values()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert 'action_head' not in policy.quantizable_layers()
