# Copyright 2026 qvla_ros authors. Apache-2.0.
"""An ActionChunk (our custom message) round-trips between two processes over loopback."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

PUBLISHER = textwrap.dedent('''
    import time, rclpy
    from qvla_ros.ros.env import apply_loopback_env
    apply_loopback_env()
    from qvla_ros_interfaces.msg import ActionChunk
    rclpy.init()
    node = rclpy.create_node('chunk_pub')
    pub = node.create_publisher(ActionChunk, '/qvla_test/chunk', 10)
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    msg = ActionChunk()
    msg.header.frame_id = 'base_link'
    msg.action_space = 'ee_delta'
    msg.dt = 0.1
    msg.dimension_names = ['x', 'y', 'z', 'roll', 'pitch', 'yaw', 'gripper']
    msg.shape = [8, 7]
    msg.data = [0.25 * i - 7.0 for i in range(56)]
    msg.model_id = 'toy:0'
    msg.plan_id = 'plan-abc'
    for _ in range(50):
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
''')


@pytest.mark.ros
def test_action_chunk_cross_process(rclpy_context):
    from qvla_ros_interfaces.msg import ActionChunk
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    node = rclpy.create_node('chunk_sub', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    got = []
    node.create_subscription(ActionChunk, '/qvla_test/chunk', got.append, 10)
    proc = subprocess.Popen([sys.executable, '-c', PUBLISHER], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        proc.wait(timeout=30)
        node.destroy_node()
    assert got, 'no ActionChunk arrived from the publisher process'
    msg = got[0]
    assert msg.action_space == 'ee_delta' and msg.dt == pytest.approx(0.1)
    assert list(msg.shape) == [8, 7]
    assert list(msg.dimension_names)[-1] == 'gripper'
    assert list(msg.data) == pytest.approx([0.25 * i - 7.0 for i in range(56)])
    assert (msg.model_id, msg.plan_id, msg.header.frame_id) == ('toy:0', 'plan-abc',
                                                                'base_link')
    assert proc.returncode == 0
