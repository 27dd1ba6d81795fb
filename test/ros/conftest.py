# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Fixtures for the ROS tests: a packed toy checkpoint and a probe node facing policy_node."""

import time

import numpy as np
import pytest


@pytest.fixture
def quantized_toy(tmp_path):
    """Return (checkpoint folder, plan folder) of a packed 4-bit toy policy made by the CLI."""
    from qvla_ros.cli.qvla import main as qvla
    sens, plan, ckpt = tmp_path / 's.safetensors', tmp_path / 'plan', tmp_path / 'ckpt'
    assert qvla(['sensitivity', '--model', 'toy', '--synthetic', '8', '--method', 'proxy',
                 '--out', str(sens)]) == 0
    assert qvla(['allocate', '--sensitivity', str(sens), '--target-bits', '4',
                 '--out', str(plan)]) == 0
    assert qvla(['quantize', '--model', 'toy', '--plan', str(plan), '--out', str(ckpt)]) == 0
    return ckpt, plan


class Probe:
    """A test-side node: camera and instruction publisher, command and status recorder."""

    def __init__(self, context, target='/policy_node'):
        import rclpy
        from geometry_msgs.msg import TwistStamped
        from lifecycle_msgs.srv import ChangeState
        from qvla_ros_interfaces.msg import PolicyStatus
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from std_srvs.srv import SetBool
        from qvla_ros.ros import qos
        self.node = rclpy.create_node('safety_probe', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.image = self.node.create_publisher(Image, f'{target}/image', qos.sensor())
        self.text = self.node.create_publisher(String, f'{target}/instruction', qos.latched())
        self.twists, self.status = [], []
        self.node.create_subscription(TwistStamped, f'{target}/delta_twist_cmds',
                                      lambda m: self.twists.append((time.monotonic(), m)),
                                      qos.commands())
        self.node.create_subscription(PolicyStatus, f'{target}/policy_status',
                                      lambda m: self.status.append(m), qos.commands())
        self.enable = self.node.create_client(SetBool, f'{target}/enable')
        self.change_state = self.node.create_client(ChangeState, f'{target}/change_state')
        self._SetBool, self._ChangeState, self._Image, self._String = \
            SetBool, ChangeState, Image, String

    @staticmethod
    def is_zero(twist) -> bool:
        """Return True when a TwistStamped commands no motion at all."""
        t = twist.twist
        return all(v == 0.0 for v in (t.linear.x, t.linear.y, t.linear.z,
                                      t.angular.x, t.angular.y, t.angular.z))

    def frame(self):
        """Return a valid 48x64 rgb8 Image message."""
        from qvla_ros.data.images import rgb_to_image_fields
        msg = self._Image()
        msg.height, msg.width, msg.encoding, msg.step, msg.data = \
            rgb_to_image_fields(np.full((48, 64, 3), 90, np.uint8))
        return msg

    def spin(self, seconds, camera=True, frame=None):
        """Spin for ``seconds``, publishing a camera frame per turn when ``camera``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if camera:
                self.image.publish(frame or self.frame())
            self.executor.spin_once(timeout_sec=1 / 30)

    def wait_status(self, predicate, seconds):
        """Spin until a received status satisfies ``predicate``; return whether one did."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if any(predicate(s) for s in self.status):
                return True
            self.spin(0.2)
        return False

    def call(self, client, request, timeout=10.0):
        """Call a service and return its response (fails the test on a timeout)."""
        assert client.wait_for_service(timeout_sec=30), f'{client.srv_name} never appeared'
        future = client.call_async(request)
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), f'{client.srv_name} did not answer in {timeout} s'
        return future.result()

    def set_enabled(self, on: bool):
        """Call ``~/enable`` and return the response."""
        return self.call(self.enable, self._SetBool.Request(data=on))

    def transition(self, transition_id: int):
        """Ask the lifecycle node for a transition; return whether it succeeded."""
        request = self._ChangeState.Request()
        request.transition.id = transition_id
        return self.call(self.change_state, request).success

    def wait_running(self, seconds=40.0):
        """Wait until the node has activated (DRY_RUN or later); fail the test otherwise.

        A namesake killed by an earlier test stays on the DDS graph until its lease expires
        (20 s by default); the node refuses to activate meanwhile and retries each second.
        """
        running = ('DRY_RUN', 'ACTIVE', 'WARN')
        assert self.wait_status(lambda s: s.state_name in running, seconds), \
            sorted({(s.state_name, s.last_error) for s in self.status})

    def instruct(self, text: str = 'push the red block to the left'):
        """Publish the instruction (latched)."""
        self.text.publish(self._String(data=text))

    def turn_on(self):
        """Wait for the node to activate, publish the instruction and enable actuation."""
        self.wait_running()
        self.instruct()
        response = self.set_enabled(True)
        assert response.success, response.message

    def drive(self, seconds=2.0):
        """Turn on and spin until the policy has published non-zero motion; fail otherwise."""
        self.turn_on()
        end = time.monotonic() + max(seconds, 20.0)
        while time.monotonic() < end:
            self.spin(0.5)
            if any(not self.is_zero(m) for _, m in self.twists[-5:]):
                return
        raise AssertionError('the policy never commanded motion')

    def close(self):
        """Destroy the probe node."""
        self.node.destroy_node()


@pytest.fixture
def probe(rclpy_context):
    """Yield a Probe facing /policy_node."""
    p = Probe(rclpy_context)
    yield p
    p.close()


@pytest.fixture
def local_policy(request):
    """Yield an activated PolicyNode spun in this process (its default model), in a context
    of its own, so a test can reach into it; destroy it on the way out.

    Indirect parametrization passes parameter overrides: {'execute_steps': 3}.
    """
    import threading
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from qvla_ros.ros.policy_node import PolicyNode
    context = rclpy.Context()
    rclpy.init(context=context)
    overrides = [Parameter(k, value=v) for k, v in getattr(request, 'param', {}).items()]
    node = PolicyNode(context=context, parameter_overrides=overrides)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    try:
        node.trigger_configure()
        node.trigger_activate()
        thread.start()
        yield node
    finally:
        executor.shutdown(timeout_sec=2)
        node.destroy_node()
        context.try_shutdown()
        thread.join(5)
