# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The thin ROS 2 layer: the only subpackage that imports rclpy.

`env` and `interfaces` are rclpy-free so that launchers and build tools can use them before
any ROS library is loaded.
"""
