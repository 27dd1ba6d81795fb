# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Named QoS profiles used by every qvla_ros node."""

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)


def sensor() -> QoSProfile:
    """Camera frames: best effort, keep only the latest."""
    profile = QoSProfile(depth=1)
    profile.reliability = qos_profile_sensor_data.reliability
    profile.history = HistoryPolicy.KEEP_LAST
    return profile


def latched() -> QoSProfile:
    """Instructions: reliable and transient local, so a late joiner gets the last one."""
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL,
                      history=HistoryPolicy.KEEP_LAST)


def commands() -> QoSProfile:
    """Actuation and status outputs: reliable, shallow."""
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      history=HistoryPolicy.KEEP_LAST)
