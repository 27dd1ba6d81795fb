# Copyright 2026 qvla_ros authors. Apache-2.0.
"""ROS-free QVLA library: quantizer math, sensitivity, allocation, baselines, plans."""
