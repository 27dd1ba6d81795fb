# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Loopback-only ROS 2 environment and package-share resolution (no rclpy import).

Every process of ours that touches rclpy calls :func:`apply_loopback_env` before
``rclpy.init()``. Kilted ignores ``ROS_LOCALHOST_ONLY``; what keeps DDS on the machine is
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` plus a Fast DDS profile whose transports are SHM
and UDPv4 bound to 127.0.0.1 (measured with tcpdump: zero packets off loopback).
"""

from importlib import resources
import os
from pathlib import Path
import sys
from typing import Mapping, MutableMapping, Optional

PACKAGE = 'qvla_ros'
DISCOVERY_RANGE = 'LOCALHOST'
PROFILE_NAME = 'fastdds_loopback_only.xml'
# Variables we own; a spawned process must see exactly these values.
LOOPBACK_KEYS = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'FASTDDS_DEFAULT_PROFILES_FILE')
# The deprecated spelling makes Kilted's rmw log a warning per process, and a stale value
# could point at a profile with multicast; we never pass it on.
REMOVED_KEYS = ('FASTRTPS_DEFAULT_PROFILES_FILE', 'ROS_STATIC_PEERS')
MAX_DOMAIN_ID = 232


def profile_path() -> Path:
    """Return the path of the loopback-only Fast DDS profile shipped as package data."""
    path = Path(str(resources.files('qvla_ros.ros').joinpath(PROFILE_NAME)))
    if not path.is_file():
        raise FileNotFoundError(
            f'the Fast DDS profile {PROFILE_NAME} is missing from the qvla_ros.ros package '
            f'data (expected at {path}); reinstall qvla_ros')
    return path


def source_root() -> Optional[Path]:
    """Return the repository root when running from a source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    if (root / 'package.xml').is_file() and (root / 'msg').is_dir():
        return root
    return None


def overlay_prefix(root: Path) -> Path:
    """Return the ament overlay prefix used to make a source checkout resolvable."""
    return root / 'build' / 'ament_overlay'


def register_source_tree(root: Path) -> Path:
    """Create ``share/`` and the ament index marker for an editable install.

    ``pip install -e`` skips ``data_files``, so ``get_package_share_directory`` would fail.
    This writes ``<root>/build/ament_overlay/share/{ament_index marker, qvla_ros/...}`` as
    symlinks into the checkout and returns the prefix to put on ``AMENT_PREFIX_PATH``.
    """
    prefix = overlay_prefix(root)
    marker = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    share = prefix / 'share' / PACKAGE
    share.mkdir(parents=True, exist_ok=True)
    for name in ('package.xml', 'launch', 'config', 'msg'):
        link = share / name
        if link.is_symlink() or link.exists():
            if link.is_symlink() and link.resolve() == (root / name).resolve():
                continue
            link.unlink()
        link.symlink_to(root / name)
    return prefix


def ament_prefixes() -> list:
    """Return the prefixes that should be on ``AMENT_PREFIX_PATH`` for this install."""
    prefixes = []
    root = source_root()
    if root is not None and overlay_prefix(root).is_dir():
        prefixes.append(str(overlay_prefix(root)))
    prefixes.append(sys.prefix)
    return prefixes


def validate_domain_id(domain_id: int) -> int:
    """Return ``domain_id`` if it is a usable ROS domain id, else raise ValueError."""
    if isinstance(domain_id, bool) or not isinstance(domain_id, int):
        raise ValueError(f'ROS domain id must be an int in [0, {MAX_DOMAIN_ID}], '
                         f'got {domain_id!r}')
    if not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise ValueError(f'ROS domain id must be in [0, {MAX_DOMAIN_ID}], got {domain_id}')
    return domain_id


def loopback_env(base: Mapping[str, str], domain_id: Optional[int] = None) -> dict:
    """Return a copy of ``base`` with the loopback-only ROS settings applied.

    Pure: ``base`` is not modified. ``AMENT_PREFIX_PATH`` gains this install's prefixes.
    """
    env = dict(base)
    for key in REMOVED_KEYS:
        env.pop(key, None)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = DISCOVERY_RANGE
    env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(profile_path())
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(validate_domain_id(domain_id))
    ours = ament_prefixes()
    existing = [p for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    prefixes = ours + [p for p in existing if p not in ours]
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(prefixes)
    return env


def apply_loopback_env(domain_id: Optional[int] = None,
                       environ: Optional[MutableMapping[str, str]] = None) -> dict:
    """Apply the loopback-only settings to ``environ`` (default ``os.environ``).

    Call before ``rclpy.init()``: rcl and Fast DDS read these variables at init and at
    participant creation. Returns the variables that were set.
    """
    target = os.environ if environ is None else environ
    new = loopback_env(target, domain_id)
    for key in REMOVED_KEYS:
        target.pop(key, None)
    changed = {k: v for k, v in new.items() if target.get(k) != v}
    target.update(changed)
    return changed


def check_loopback_env(environ: Mapping[str, str]) -> None:
    """Raise RuntimeError naming what is wrong if ``environ`` is not loopback-only."""
    if environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') != DISCOVERY_RANGE:
        raise RuntimeError(
            'ROS_AUTOMATIC_DISCOVERY_RANGE must be LOCALHOST for qvla_ros processes, got '
            f'{environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")!r}; call apply_loopback_env()')
    profile = environ.get('FASTDDS_DEFAULT_PROFILES_FILE', '')
    if not profile or Path(profile).name != PROFILE_NAME or not Path(profile).is_file():
        raise RuntimeError(
            f'FASTDDS_DEFAULT_PROFILES_FILE must point at {PROFILE_NAME}, got {profile!r}')


def share_directory() -> Path:
    """Return ``share/qvla_ros``: the ament index when it resolves, else the source tree."""
    for prefix in ament_prefixes() + os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if not prefix:
            continue
        marker = Path(prefix) / 'share' / 'ament_index' / 'resource_index' / 'packages'
        if (marker / PACKAGE).exists() and (Path(prefix) / 'share' / PACKAGE).is_dir():
            return Path(prefix) / 'share' / PACKAGE
    root = source_root()
    if root is not None:
        return root
    raise FileNotFoundError(
        'cannot find share/qvla_ros: install the package with pip (not -e) or colcon, or run '
        '`qvla-ros register-source-tree` in the checkout')
