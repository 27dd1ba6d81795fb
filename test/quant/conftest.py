# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Fixtures for quant tests: factories for a tiny policy and a calibration batch."""

import pytest
import torch

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
