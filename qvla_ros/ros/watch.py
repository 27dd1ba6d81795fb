# Copyright 2026 qvla_ros authors. Apache-2.0.
"""A small client node: switches a policy node's actuation and collects its commands."""

from dataclasses import dataclass
import time
from typing import List

from geometry_msgs.msg import TwistStamped
from qvla_ros_interfaces.msg import ActionChunk as ActionChunkMsg
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_srvs.srv import SetBool

from qvla_ros.ros import qos
from qvla_ros.ros.env import apply_loopback_env


@dataclass(frozen=True)
class Command:
    """One TwistStamped received from the policy node, with its arrival time."""

    t: float
    linear: tuple
    angular: tuple


def collect_commands(policy: str, count: int, timeout: float) -> tuple:
    """Enable ``policy`` and return (commands, chunks_received, elapsed seconds).

    Raises TimeoutError naming what never arrived. Expects rclpy to be initialized.
    """
    node = Node('qvla_watch')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    commands: List[Command] = []
    chunks = []
    node.create_subscription(
        TwistStamped, f'{policy}/delta_twist_cmds',
        lambda m: commands.append(Command(time.monotonic(),
                                          (m.twist.linear.x, m.twist.linear.y, m.twist.linear.z),
                                          (m.twist.angular.x, m.twist.angular.y,
                                           m.twist.angular.z))),
        qos.commands())
    node.create_subscription(ActionChunkMsg, f'{policy}/action_chunk',
                             lambda m: chunks.append(m), qos.commands())
    client = node.create_client(SetBool, f'{policy}/enable')
    start = time.monotonic()
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f'service {policy}/enable did not appear within {timeout} s')
        future = client.call_async(SetBool.Request(data=True))
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done() or not future.result().success:
            raise TimeoutError(f'{policy}/enable did not answer within {timeout} s')
        while len(commands) < count:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f'only {len(commands)} of {count} commands arrived on '
                                   f'{policy}/delta_twist_cmds within {timeout} s')
            executor.spin_once(timeout_sec=0.1)
        return commands[:count], len(chunks), time.monotonic() - start
    finally:
        executor.remove_node(node)
        node.destroy_node()


def set_enabled(policy: str, on: bool, timeout: float) -> str:
    """Call ``policy``/enable; return its answer, or raise TimeoutError / RuntimeError.

    Expects rclpy to be initialized.
    """
    node = Node('qvla_enable')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    client = node.create_client(SetBool, f'{policy}/enable')
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f'service {policy}/enable did not appear within {timeout} s; '
                               'is the policy node running (on this ROS domain)?')
        future = client.call_async(SetBool.Request(data=on))
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done():
            raise TimeoutError(f'{policy}/enable did not answer within {timeout} s')
        answer = future.result()
        if not answer.success:
            raise RuntimeError(f'{policy} refused: {answer.message}')
        return answer.message
    finally:
        executor.remove_node(node)
        node.destroy_node()


def _with_rclpy(domain_id, fn, *args):
    """Return ``fn(*args)`` run with rclpy initialized on loopback, shut down afterwards."""
    apply_loopback_env(domain_id)
    rclpy.init()
    try:
        return fn(*args)
    finally:
        rclpy.try_shutdown()


def run_enable(policy: str, on: bool, timeout: float, domain_id=None) -> str:
    """Initialize rclpy, switch actuation, shut down."""
    return _with_rclpy(domain_id, set_enabled, policy, on, timeout)


def run_collect(policy: str, count: int, timeout: float, domain_id=None) -> tuple:
    """Initialize rclpy, collect commands, shut down."""
    return _with_rclpy(domain_id, collect_commands, policy, count, timeout)
