# Copyright 2026 qvla_ros authors. Apache-2.0.
"""qvla_ros: QVLA mixed-bit quantized VLA policies, with a thin ROS 2 layer on top.

Importing this package loads nothing heavy; each subpackage is imported on use.
"""

__version__ = '0.2.0'
