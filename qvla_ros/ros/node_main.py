# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The shared ``main()`` of every qvla_ros node: loopback env, init, spin, clean shutdown."""

from typing import Callable, Optional

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from qvla_ros.ros.env import apply_loopback_env


def run_node(make_node: Callable[[], Node], args=None,
             make_executor: Optional[Callable[[Node], Executor]] = None,
             before_spin: Optional[Callable[[Node], None]] = None) -> None:
    """Apply the loopback env, init rclpy, build the node and spin it until shutdown."""
    apply_loopback_env()
    rclpy.init(args=args)
    node = make_node()
    executor = make_executor(node) if make_executor else SingleThreadedExecutor()
    executor.add_node(node)
    if before_spin is not None:
        before_spin(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
