# Copyright 2026 qvla_ros authors. Apache-2.0.
"""launch/*.launch.py through launch_ros, where a ROS 2 distro provides it."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_policy_launch_description_builds():
    pytest.importorskip('launch_ros', reason='launch_ros is not on PyPI; it comes with a ROS 2 '
                        'distro. pip installs use `qvla-ros launch`, tested in '
                        'test_launcher.py and test_policy_node.py')
    import importlib.util
    for name in ('policy', 'calibration', 'demo'):
        spec = importlib.util.spec_from_file_location(name, ROOT / 'launch' /
                                                      f'{name}.launch.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
        assert description.entities
