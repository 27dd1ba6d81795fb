# Copyright 2026 qvla_ros authors. Apache-2.0.
"""policy_node safety across processes: watchdog, bad input, misconfiguration."""

import time

from geometry_msgs.msg import TwistStamped
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import String

from qvla_ros.ros import qos
from qvla_ros.ros.conversions import rgb_to_image_fields
from qvla_ros.ros.launcher import Launch


class Probe:
    """A test-side node: camera and instruction publisher, command and status recorder."""

    def __init__(self, context):
        import rclpy
        from qvla_ros_interfaces.msg import PolicyStatus
        from rclpy.executors import SingleThreadedExecutor
        from std_srvs.srv import SetBool
        self.node = rclpy.create_node('safety_probe', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.image = self.node.create_publisher(Image, '/policy_node/image', qos.sensor())
        self.text = self.node.create_publisher(String, '/policy_node/instruction',
                                               qos.latched())
        self.twists, self.status = [], []
        self.node.create_subscription(TwistStamped, '/policy_node/delta_twist_cmds',
                                      lambda m: self.twists.append((time.monotonic(), m)),
                                      qos.commands())
        self.node.create_subscription(PolicyStatus, '/policy_node/policy_status',
                                      lambda m: self.status.append(m), qos.commands())
        self.enable = self.node.create_client(SetBool, '/policy_node/enable')
        self._request = SetBool.Request(data=True)

    def spin(self, seconds, camera=True, frame=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if camera:
                msg = frame or Image()
                if frame is None:
                    msg.height, msg.width, msg.encoding, msg.step, msg.data = \
                        rgb_to_image_fields(np.full((48, 64, 3), 90, np.uint8))
                self.image.publish(msg)
            self.executor.spin_once(timeout_sec=1 / 30)

    def wait_status(self, predicate, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if any(predicate(s) for s in self.status):
                return True
            self.spin(0.2)
        return False

    def turn_on(self):
        assert self.enable.wait_for_service(timeout_sec=30)
        self.text.publish(String(data='push the red block to the left'))
        future = self.enable.call_async(self._request)
        self.executor.spin_until_future_complete(future, timeout_sec=10)
        assert future.result().success, future.result().message

    def close(self):
        self.node.destroy_node()


@pytest.fixture
def probe(rclpy_context):
    p = Probe(rclpy_context)
    yield p
    p.close()


@pytest.mark.ros
def test_watchdog_stops_motion_and_warns(probe, domain_id):
    launch = Launch('policy', domain_id=domain_id, overrides=['image_timeout:=0.3']).start()
    try:
        probe.turn_on()
        probe.spin(2.0)
        moving = [m for _, m in probe.twists[-5:]]
        assert moving and any(abs(m.twist.linear.x) > 0 for m in moving)
        stop = time.monotonic()
        probe.twists.clear()
        probe.spin(1.5, camera=False)
        late = [m for t, m in probe.twists if t > stop + 0.3 + 0.1 + 0.05]
        assert late, 'no commands after the camera stopped'
        assert all(m.twist.linear.x == m.twist.linear.y == m.twist.linear.z == 0.0
                   for m in late)
        assert probe.wait_status(lambda s: s.state_name == 'WARN' and 'old' in s.last_error, 3), \
            [(s.state_name, s.last_error) for s in probe.status]
        assert launch.poll() is None
    finally:
        launch.stop()


def _bad_frames():
    def img(h, w, enc, step, data):
        m = Image()
        m.height, m.width, m.encoding, m.step, m.data = h, w, enc, step, data
        return m
    return [img(48, 64, '32FC1', 256, bytes(48 * 256)),          # wrong encoding
            img(48, 64, 'rgb8', 100, bytes(48 * 100)),           # step too small
            img(48, 64, 'rgb8', 192, bytes(10)),                 # size mismatch
            img(48, 64, 'rgb8', 192, b''),                       # empty data
            img(2160, 3840, 'rgb8', 11520, bytes(2160 * 11520))]  # a 4K frame


@pytest.mark.ros
def test_bad_input_is_rejected_and_the_node_stays_up(probe, domain_id):
    launch = Launch('policy', domain_id=domain_id,
                    overrides=['max_image_pixels:=1000000']).start()
    try:
        probe.turn_on()
        probe.spin(1.0)
        for frame in _bad_frames():
            probe.spin(0.2, frame=frame)
        for text in ('   ', 'bad\x00text'):
            probe.text.publish(String(data=text))
            probe.spin(0.2)
        assert probe.wait_status(lambda s: 'rejected' in s.last_error, 3)
        assert launch.poll() is None
        probe.text.publish(String(data='push the red block to the left'))
        probe.twists.clear()
        probe.spin(2.0)
        assert len(probe.twists) >= 15, 'the valid stream lost its rate after bad input'
    finally:
        launch.stop()


@pytest.mark.ros
@pytest.mark.parametrize('override,message', [
    ('model:=/nonexistent/checkpoint', 'config.json'),
    ('expected_action_dim:=6', 'expected_action_dim is 6'),
    ('execute_steps:=20', 'exceeds the model chunk size'),
])
def test_misconfiguration_fails_configure_cleanly(probe, domain_id, override, message):
    launch = Launch('policy', domain_id=domain_id, overrides=[override]).start()
    try:
        assert probe.wait_status(lambda s: s.state_name == 'UNCONFIGURED'
                                 and message in s.last_error, 20)
        assert launch.poll() is None, 'the node died instead of staying unconfigured'
    finally:
        launch.stop()


@pytest.mark.ros
def test_mismatched_quantized_checkpoint_fails_configure(probe, domain_id, quantized_toy):
    import json
    ckpt, _ = quantized_toy
    config = json.loads((ckpt / 'config.json').read_text())
    config['quantization_config']['layers']['vision.0']['out_features'] = 63  # wrong plan
    (ckpt / 'config.json').write_text(json.dumps(config))
    launch = Launch('policy', domain_id=domain_id, overrides=[f'model:={ckpt}']).start()
    try:
        assert probe.wait_status(lambda s: s.state_name == 'UNCONFIGURED'
                                 and 'invalid packed layer' in s.last_error, 20), \
            [(s.state_name, s.last_error) for s in probe.status]
        assert launch.poll() is None
    finally:
        launch.stop()
