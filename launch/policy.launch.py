# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Launch policy_node with its parameter file (default: config/policy.yaml)."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    """Return the policy launch description."""
    params_file = LaunchConfiguration('params_file')
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare('qvla_ros'), 'config', 'policy.yaml']),
            description='ROS 2 parameter file for policy_node'),
        Node(package='qvla_ros', executable='policy_node', name='policy_node',
             parameters=[params_file], output='screen'),
    ])
