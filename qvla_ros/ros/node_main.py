# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The shared ``main()`` of every qvla_ros node: loopback env, init, spin, safe shutdown.

rclpy's own signal handlers shut the context down inside the signal, after which nothing can
be published. A robot must get a last zero command when its driver stops, so SIGINT, SIGTERM
(systemd, ``docker stop``, a dying launcher's parent-death signal) and SIGHUP only ask the
spin loop to stop here; the node's ``stop_actuation`` then runs while the context is valid.
"""

import signal
import threading
from typing import Callable, Optional

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from qvla_ros.ros.env import apply_loopback_env

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How often the spin loop looks at the stop flag: the longest a signal waits to be seen.
POLL_S = 0.05


def install_stop_handlers(stop: threading.Event) -> None:
    """Make every stop signal set ``stop`` (repeats are harmless: no KeyboardInterrupt)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: stop.set())


def run_node(make_node: Callable[[], Node], args=None,
             make_executor: Optional[Callable[[Node], Executor]] = None,
             before_spin: Optional[Callable[[Node], None]] = None) -> None:
    """Apply the loopback env, init rclpy, build the node and spin it until a stop signal.

    A node with a ``stop_actuation(reason)`` method gets it called before the context shuts
    down, however the spin ended (signal, external shutdown or an exception in a callback).
    """
    apply_loopback_env()
    stop = threading.Event()
    install_stop_handlers(stop)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = make_node()
    executor = make_executor(node) if make_executor else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if before_spin is not None:
            before_spin(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=POLL_S)
    except ExternalShutdownException:
        pass
    finally:
        final = getattr(node, 'stop_actuation', None)
        if final is not None and rclpy.ok():
            final('process stopping')
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
