# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Fixtures for quant tests: factories for a tiny policy and a calibration batch."""

import copy

import pytest
import torch

from qvla_ros.core.primitives import fake_quant_rows
from qvla_ros.models.toy import build_toy_policy, ToyConfig


def _tiny_policy(dtype=torch.float32, seed=0):
    return build_toy_policy(seed, ToyConfig(image_size=32, pooled=8, hidden=32)).to(dtype)


def _calib_batch(n=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {'image': torch.rand(n, 3, 32, 32, generator=g, dtype=dtype),
            'tokens': torch.randint(0, 512, (n, 16), generator=g),
            'mask': (torch.arange(16) < 6).to(dtype).expand(n, 16).clone(),
            'proprio': torch.randn(n, 8, generator=g, dtype=dtype)}


@pytest.fixture
def tiny_policy():
    """Return a factory of the toy policy (about 20 k params) in a given dtype."""
    return _tiny_policy


@pytest.fixture
def calib_batch():
    """Return a factory of random calibration batches for the tiny policy."""
    return _calib_batch


def _brute(policy, batch, name, row, bits):
    """Return E ||A(row of layer at bits) - A||^2 by quantizing that row of a model copy."""
    q = copy.deepcopy(policy)
    lin = q.quantizable_layers()[name]
    per_row = torch.full((lin.out_features,), 16)
    per_row[row] = bits
    lin.weight.data = fake_quant_rows(lin.weight.data, per_row)
    with torch.no_grad():
        a0, a = policy.action_tensor(batch), q.action_tensor(batch)
    return ((a - a0) ** 2).sum((1, 2)).mean().item()


@pytest.fixture
def brute_sensitivity():
    """Return the brute-force sensitivity of one row: (policy, batch, layer, row, bits)."""
    return _brute
