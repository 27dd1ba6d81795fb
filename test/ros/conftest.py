# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Fixtures for the ROS tests."""

import pytest


@pytest.fixture
def quantized_toy(tmp_path):
    """Return (checkpoint folder, plan folder) of a packed 4-bit toy policy made by the CLI."""
    from qvla_ros.cli.qvla import main as qvla
    sens, plan, ckpt = tmp_path / 's.safetensors', tmp_path / 'plan', tmp_path / 'ckpt'
    assert qvla(['sensitivity', '--model', 'toy', '--synthetic', '8', '--method', 'proxy',
                 '--out', str(sens)]) == 0
    assert qvla(['allocate', '--sensitivity', str(sens), '--target-bits', '4',
                 '--out', str(plan)]) == 0
    assert qvla(['quantize', '--model', 'toy', '--plan', str(plan), '--out', str(ckpt)]) == 0
    return ckpt, plan
