# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Launch the main demo: sim_node <-> policy_node (quantized reference), run by sim_supervisor.

The launch ends when the supervisor has run its episodes (config/sim_demo.yaml).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    """Return the sim demo launch description."""
    params_file = LaunchConfiguration('params_file')
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare('qvla_ros'), 'config', 'sim_demo.yaml']),
            description='ROS 2 parameter file for the three nodes'),
        Node(package='qvla_ros', executable='sim_node', name='sim_node',
             parameters=[params_file], output='screen',
             remappings=[('/sim_node/delta_twist_cmds', '/policy_node/delta_twist_cmds'),
                         ('/sim_node/gripper_cmd', '/policy_node/gripper_cmd')]),
        Node(package='qvla_ros', executable='policy_node', name='policy_node',
             parameters=[params_file], output='screen',
             remappings=[('/policy_node/image', '/sim_node/image'),
                         ('/policy_node/image/agentview', '/sim_node/image/agentview'),
                         ('/policy_node/image/wrist', '/sim_node/image/wrist'),
                         ('/policy_node/instruction', '/sim_node/instruction'),
                         ('/policy_node/proprio', '/sim_node/proprio')]),
        Node(package='qvla_ros', executable='sim_supervisor', name='sim_supervisor',
             parameters=[params_file], output='screen', on_exit=Shutdown()),
    ])
