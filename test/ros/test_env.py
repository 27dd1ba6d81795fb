# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The loopback-only environment is applied by the package, and spawned nodes see it."""

import os
from pathlib import Path
import subprocess
import sys
import time

import pytest

from qvla_ros.ros import env as ros_env
from qvla_ros.ros.launcher import Launch


def test_profile_is_loopback_only():
    text = ros_env.profile_path().read_text()
    assert '<useBuiltinTransports>false</useBuiltinTransports>' in text
    assert '<address>127.0.0.1</address>' in text
    assert '<type>SHM</type>' in text
    for forbidden in ('initialPeersList', 'defaultUnicastLocatorList', 'multicast'):
        assert forbidden not in text.split('-->', 1)[1]


def test_loopback_env_is_pure_and_complete():
    base = {'FASTRTPS_DEFAULT_PROFILES_FILE': '/tmp/other.xml', 'PATH': '/bin'}
    out = ros_env.loopback_env(base, domain_id=7)
    assert base == {'FASTRTPS_DEFAULT_PROFILES_FILE': '/tmp/other.xml', 'PATH': '/bin'}
    assert out['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert Path(out['FASTDDS_DEFAULT_PROFILES_FILE']).is_file()
    assert out['ROS_DOMAIN_ID'] == '7'
    assert 'FASTRTPS_DEFAULT_PROFILES_FILE' not in out
    assert sys.prefix in out['AMENT_PREFIX_PATH'].split(os.pathsep)
    ros_env.check_loopback_env(out)


@pytest.mark.parametrize('bad', [-1, 233, 'x', True])
def test_bad_domain_id(bad):
    with pytest.raises(ValueError, match='domain id'):
        ros_env.loopback_env({}, domain_id=bad)


def test_check_rejects_missing_settings():
    with pytest.raises(RuntimeError, match='ROS_AUTOMATIC_DISCOVERY_RANGE'):
        ros_env.check_loopback_env({})


def test_this_test_process_is_loopback_only():
    ros_env.check_loopback_env(os.environ)


def test_share_directory_resolves():
    share = ros_env.share_directory()
    assert (share / 'package.xml').is_file()
    assert (share / 'config' / 'policy.yaml').is_file()


def _proc_environ(pid):
    raw = Path(f'/proc/{pid}/environ').read_bytes().split(b'\0')
    return dict(item.decode().split('=', 1) for item in raw if b'=' in item)


@pytest.mark.ros
def test_spawned_node_sees_loopback_settings(tmp_path):
    # Start from an environment with none of our settings and a stale deprecated profile.
    base = {k: v for k, v in os.environ.items()
            if k not in ros_env.LOOPBACK_KEYS and k != 'ROS_DOMAIN_ID'}
    base['FASTRTPS_DEFAULT_PROFILES_FILE'] = str(tmp_path / 'multicast.xml')
    launch = Launch('policy', domain_id=42, base_env=base).start()
    try:
        time.sleep(1.0)
        assert launch.poll() is None, 'policy_node died at start'
        seen = _proc_environ(launch.procs[0].pid)
    finally:
        launch.stop()
    ros_env.check_loopback_env(seen)
    assert seen['ROS_DOMAIN_ID'] == '42'
    assert 'FASTRTPS_DEFAULT_PROFILES_FILE' not in seen


def test_node_entry_point_applies_env_itself():
    # A node started by hand, without the runner, applies the settings before rclpy.init.
    clean = {k: v for k, v in os.environ.items() if k not in ros_env.LOOPBACK_KEYS}
    code = ('import os; from qvla_ros.ros import env; env.apply_loopback_env(); '
            'env.check_loopback_env(os.environ); print("ok")')
    out = subprocess.run([sys.executable, '-c', code], env=clean, capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr
    ros_dir = Path(ros_env.__file__).parent
    src = (ros_dir / 'node_main.py').read_text()
    body = src[src.index('def run_node('):]
    assert body.index('apply_loopback_env()') < body.index('rclpy.init(')
    for node in ('policy_node.py', 'calibration_node.py', 'synthetic_camera.py'):
        main = (ros_dir / node).read_text().split('def main(', 1)[1]
        assert 'run_node(' in main, f'{node} main() must start through run_node'
        assert 'rclpy.init' not in main
