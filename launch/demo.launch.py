# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Launch the foundation demo: synthetic_camera feeding policy_node (config/demo.yaml)."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    """Return the demo launch description."""
    params_file = LaunchConfiguration('params_file')
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare('qvla_ros'), 'config', 'demo.yaml']),
            description='ROS 2 parameter file for both nodes'),
        Node(package='qvla_ros', executable='synthetic_camera', name='synthetic_camera',
             parameters=[params_file], output='screen'),
        Node(package='qvla_ros', executable='policy_node', name='policy_node',
             parameters=[params_file], output='screen',
             remappings=[('/policy_node/image', '/synthetic_camera/image'),
                         ('/policy_node/instruction', '/synthetic_camera/instruction')]),
    ])
