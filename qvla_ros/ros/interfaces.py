# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Generate and build ``qvla_ros_interfaces`` from ``msg/`` (no rclpy import).

ROS builds messages only from an ament_cmake package, while qvla_ros is ament_python. The
``.msg`` files in this repository are the source of truth; this module writes a sibling
ament_cmake package from them and either

* builds it with cmake + ninja into a prefix (the venv for pip installs), or
* exports it into a colcon workspace's ``src/`` for robots with a ROS 2 distro.
"""

import hashlib
import os
from pathlib import Path
import shutil
import subprocess
import sys
import sysconfig
from typing import Iterable, List

from qvla_ros.storage.atomic import write_text

INTERFACES = 'qvla_ros_interfaces'
STAMP = 'qvla_ros_interfaces.stamp'
# Paths of the manylinux build container baked into the message wheels' CMake exports.
_BAKED_INCLUDE = '/opt/python/cp311-cp311/include/python3.11'
_BAKED_NUMPY = '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include'


class InterfaceBuildError(RuntimeError):
    """The interface package could not be generated or built."""


def message_files(msg_dir: Path) -> List[Path]:
    """Return the ``.msg`` files in ``msg_dir``, sorted; raise if there are none."""
    files = sorted(Path(msg_dir).glob('*.msg'))
    if not files:
        raise InterfaceBuildError(f'no .msg files found in {msg_dir} (expected msg/*.msg)')
    return files


def message_dependencies(texts: Iterable[str]) -> List[str]:
    """Return the packages that the fields of the given ``.msg`` texts refer to."""
    deps = set()
    for text in texts:
        for line in text.splitlines():
            code = line.split('#', 1)[0].strip()
            if not code or '=' in code:  # blank, comment or constant
                continue
            ftype = code.split()[0].split('[')[0]
            if '/' in ftype:
                deps.add(ftype.split('/')[0])
            elif ftype == 'Header':
                deps.add('std_msgs')
    return sorted(deps)


def digest(msg_dir: Path) -> str:
    """Return a hash of the message sources, used to skip rebuilding unchanged interfaces."""
    h = hashlib.sha256()
    for path in message_files(msg_dir):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _cmakelists(msgs: List[Path], deps: List[str]) -> str:
    find = '\n'.join(f'find_package({d} REQUIRED)' for d in deps)
    files = '\n'.join(f'  "msg/{m.name}"' for m in msgs)
    return (
        'cmake_minimum_required(VERSION 3.8)\n'
        f'project({INTERFACES})\n\n'
        'find_package(ament_cmake REQUIRED)\n'
        'find_package(rosidl_default_generators REQUIRED)\n'
        f'{find}\n\n'
        'rosidl_generate_interfaces(${PROJECT_NAME}\n'
        f'{files}\n'
        f'  DEPENDENCIES {" ".join(deps)}\n'
        ')\n\n'
        'ament_export_dependencies(rosidl_default_runtime)\n'
        'ament_package()\n')


def _package_xml(deps: List[str]) -> str:
    depends = '\n'.join(f'  <depend>{d}</depend>' for d in deps)
    return (
        '<?xml version="1.0"?>\n'
        '<package format="3">\n'
        f'  <name>{INTERFACES}</name>\n'
        '  <version>0.1.0</version>\n'
        '  <description>Messages of qvla_ros, generated from qvla_ros/msg by '
        '`qvla-ros build-interfaces`. Do not edit: edit qvla_ros/msg instead.</description>\n'
        '  <maintainer email="maintainers@qvla-ros.invalid">qvla_ros maintainers</maintainer>\n'
        '  <license>Apache-2.0</license>\n'
        '  <buildtool_depend>ament_cmake</buildtool_depend>\n'
        '  <buildtool_depend>rosidl_default_generators</buildtool_depend>\n'
        f'{depends}\n'
        '  <exec_depend>rosidl_default_runtime</exec_depend>\n'
        '  <member_of_group>rosidl_interface_packages</member_of_group>\n'
        '  <export><build_type>ament_cmake</build_type></export>\n'
        '</package>\n')


def write_package(msg_dir: Path, out_dir: Path) -> Path:
    """Write the ament_cmake package ``qvla_ros_interfaces`` into ``out_dir``; return it."""
    msgs = message_files(msg_dir)
    deps = message_dependencies(m.read_text() for m in msgs)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / 'msg').mkdir(parents=True)
    for msg in msgs:
        shutil.copyfile(msg, out_dir / 'msg' / msg.name)
    (out_dir / 'CMakeLists.txt').write_text(_cmakelists(msgs, deps))
    (out_dir / 'package.xml').write_text(_package_xml(deps))
    return out_dir


def export_to_workspace(msg_dir: Path, workspace: Path) -> Path:
    """Write the interface package into ``<workspace>/src`` for ``colcon build``."""
    src = Path(workspace) / 'src'
    if not src.is_dir():
        raise InterfaceBuildError(
            f'{workspace} is not a colcon workspace: expected a src/ folder in it')
    return write_package(msg_dir, src / INTERFACES)


def fix_wheel_cmake_paths(prefix: Path) -> int:
    """Replace build-container paths baked into the message wheels' CMake exports.

    Returns the number of files rewritten (atomically, one temp file each).
    """
    py_inc = sysconfig.get_paths()['include']
    import numpy
    np_inc = numpy.get_include()
    count = 0
    share = Path(prefix) / 'share'
    for path in share.rglob('*.cmake'):
        text = path.read_text(errors='replace')
        if '/opt/python/cp311-cp311' not in text:
            continue
        text = text.replace(_BAKED_NUMPY, np_inc).replace(_BAKED_INCLUDE, py_inc)
        write_text(path, text)
        count += 1
    return count


def is_built(prefix: Path, msg_dir: Path) -> bool:
    """Return True when the interfaces in ``prefix`` were built from these exact sources."""
    stamp = Path(prefix) / 'share' / INTERFACES / STAMP
    return stamp.is_file() and stamp.read_text().strip() == digest(msg_dir)


def build_into_prefix(msg_dir: Path, prefix: Path, build_dir: Path,
                      force: bool = False) -> bool:
    """Build and install the interfaces into ``prefix``; return False if already up to date."""
    if not force and is_built(prefix, msg_dir):
        return False
    for tool in ('cmake', 'ninja'):
        if shutil.which(tool) is None:
            raise InterfaceBuildError(
                f'{tool} is required to build {INTERFACES}; install it (apt-get install '
                'cmake ninja-build) or run `make setup`')
    prefix = Path(prefix).resolve()
    build_dir = Path(build_dir).resolve()
    pkg = write_package(msg_dir, build_dir / 'src' / INTERFACES)
    fix_wheel_cmake_paths(prefix)
    env = dict(os.environ)
    env['AMENT_PREFIX_PATH'] = str(prefix)
    env['CMAKE_PREFIX_PATH'] = str(prefix)
    cmake_build = build_dir / 'cmake'
    if cmake_build.exists():
        shutil.rmtree(cmake_build)
    commands = [
        ['cmake', '-S', str(pkg), '-B', str(cmake_build), '-G', 'Ninja',
         f'-DCMAKE_PREFIX_PATH={prefix}', f'-DCMAKE_INSTALL_PREFIX={prefix}',
         f'-DPython3_EXECUTABLE={sys.executable}', '-DBUILD_TESTING=OFF'],
        ['ninja', '-C', str(cmake_build), 'install'],
    ]
    for cmd in commands:
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise InterfaceBuildError(
                f'`{" ".join(cmd[:2])}` failed with exit code {result.returncode}:\n'
                f'{result.stdout[-4000:]}\n{result.stderr[-4000:]}')
    stamp = prefix / 'share' / INTERFACES / STAMP
    stamp.write_text(digest(msg_dir) + '\n')
    return True
