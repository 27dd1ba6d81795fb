# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Test fixtures: every test process runs with the loopback-only ROS environment."""

import os
import tempfile

import pytest

from qvla_ros.ros.env import apply_loopback_env

# One domain per test session so that concurrent runs on one machine never cross-talk.
DOMAIN_ID = int(os.environ.get('QVLA_TEST_DOMAIN_ID', 1 + os.getpid() % 200))


def pytest_configure(config):
    """Apply the loopback env before any test can initialize rclpy."""
    apply_loopback_env(DOMAIN_ID)
    os.environ.setdefault('ROS_LOG_DIR', tempfile.mkdtemp(prefix='qvla_roslog_'))
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')


def pytest_collection_modifyitems(config, items):
    """Skip tests marked gpu when CUDA is absent, with the reason."""
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs CUDA; run bench/gpu_check.sh on a GPU machine')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def domain_id():
    """Return the ROS domain id of this test session."""
    return DOMAIN_ID


@pytest.fixture
def rclpy_context():
    """Yield an initialized private rclpy context, shut down afterwards."""
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()
