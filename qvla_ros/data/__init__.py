# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Rollout dataset reader/writer and rosbag2 import."""
