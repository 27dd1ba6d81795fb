# Copyright 2026 qvla_ros authors. Apache-2.0.
"""ROS-free inference runtime: observation in, scheduled actions out."""
