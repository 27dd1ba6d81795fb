# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Launch calibration_node with its parameter file (default: config/calibration.yaml)."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    """Return the calibration launch description."""
    params_file = LaunchConfiguration('params_file')
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare('qvla_ros'), 'config', 'calibration.yaml']),
            description='ROS 2 parameter file for calibration_node'),
        Node(package='qvla_ros', executable='calibration_node', name='calibration_node',
             parameters=[params_file], output='screen'),
    ])
