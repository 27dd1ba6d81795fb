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


@pytest.fixture(scope='session')
def wide_dataset(tmp_path_factory):
    """Random episodes with six proprio values (the last two a goal, say), two instructions."""
    import numpy as np
    from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
    root = tmp_path_factory.mktemp('bc6')
    w = RolloutWriter(root, DatasetInfo(7, 6, 10.0, ('front',)))
    rng = np.random.default_rng(1)
    for e in range(4):
        proprio = rng.normal(0, 1, (6, 6)).astype(np.float32)
        w.add_episode({'front': rng.integers(0, 255, (6, 32, 32, 3), np.uint8)}, proprio,
                      rng.normal(0, 0.02, (6, 7)).astype(np.float32),
                      np.arange(6, dtype=np.int64), 'go right' if e % 2 else 'go left', True,
                      'sim', 'expert')
    return root


@pytest.fixture(scope='session')
def up():
    """The helpers of test/models/upstream_folders.py: Hub-layout OpenVLA / OFT folders."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parent / 'models' / 'upstream_folders.py'
    spec = importlib.util.spec_from_file_location('qvla_test_upstream_folders', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def interpreted():
    """Run a Python script in a subprocess under TRITON_INTERPRET=1; return its stdout.

    A subprocess because the flag must be set before triton is first imported.
    """
    import os
    import subprocess
    import sys

    def run(script: str) -> str:
        env = dict(os.environ, TRITON_INTERPRET='1')
        out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout
    return run
