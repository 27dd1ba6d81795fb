# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The core layers never load rclpy; quant never loads triton (docs/architecture.md)."""

import json
import subprocess
import sys

import pytest

CORE = ['qvla_ros.quant', 'qvla_ros.kernels', 'qvla_ros.models', 'qvla_ros.runtime',
        'qvla_ros.models.toy', 'qvla_ros.runtime.chunking', 'qvla_ros.ros.env',
        'qvla_ros.ros.interfaces', 'qvla_ros.ros.launcher']


def _loaded(module):
    code = (f'import importlib, json, sys; importlib.import_module({module!r}); '
            'print(json.dumps(sorted(m.split(".")[0] for m in sys.modules)))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize('module', CORE)
def test_core_does_not_load_rclpy(module):
    assert 'rclpy' not in _loaded(module)


def test_quant_does_not_load_triton():
    assert 'triton' not in _loaded('qvla_ros.quant')


def test_ros_layer_does_load_rclpy():
    # The check above must be able to fail: the ROS layer really imports rclpy.
    assert 'rclpy' in _loaded('qvla_ros.ros.policy_node')
