# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The interface generator writes a correct ament_cmake package from msg/."""

from pathlib import Path

import pytest

from qvla_ros.ros import interfaces

ROOT = Path(__file__).resolve().parents[2]


def test_dependencies_from_fields():
    text = 'std_msgs/Header header\nuint8 OK=0\ngeometry_msgs/Twist[] t # c\nfloat32 x\n'
    assert interfaces.message_dependencies([text]) == ['geometry_msgs', 'std_msgs']


def test_write_package(tmp_path):
    pkg = interfaces.write_package(ROOT / 'msg', tmp_path / 'pkg')
    cmake = (pkg / 'CMakeLists.txt').read_text()
    assert '"msg/ActionChunk.msg"' in cmake and '"msg/PolicyStatus.msg"' in cmake
    assert 'DEPENDENCIES std_msgs' in cmake
    xml = (pkg / 'package.xml').read_text()
    assert '<member_of_group>rosidl_interface_packages</member_of_group>' in xml
    assert (pkg / 'msg' / 'ActionChunk.msg').read_text() == (
        ROOT / 'msg' / 'ActionChunk.msg').read_text()


def test_export_needs_a_workspace(tmp_path):
    with pytest.raises(interfaces.InterfaceBuildError, match='src/'):
        interfaces.export_to_workspace(ROOT / 'msg', tmp_path)
    (tmp_path / 'src').mkdir()
    out = interfaces.export_to_workspace(ROOT / 'msg', tmp_path)
    assert out == tmp_path / 'src' / 'qvla_ros_interfaces'


def test_no_messages_is_an_error(tmp_path):
    with pytest.raises(interfaces.InterfaceBuildError, match='no .msg files'):
        interfaces.message_files(tmp_path)


def test_installed_interfaces_are_current():
    import sys
    assert interfaces.is_built(Path(sys.prefix), ROOT / 'msg'), (
        'qvla_ros_interfaces is stale or missing: run `make setup`')
