# Copyright 2026 qvla_ros authors. Apache-2.0.
"""policy_node with several cameras, raw and compressed, across processes."""

from dataclasses import replace
import time

from geometry_msgs.msg import TwistStamped
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from qvla_ros.data.images import rgb_to_compressed, rgb_to_image_fields
from qvla_ros.ros import qos
from qvla_ros.ros.launcher import Launch

CAMERAS = ('agentview', 'wrist')
NS = 1_000_000_000


@pytest.fixture(scope='module')
def two_camera_model(tmp_path_factory):
    """A random tiny qvla-ref that reads the cameras agentview and wrist."""
    from qvla_ros.models.checkpoint import save_policy
    from qvla_ros.models.reference import build_reference, CONFIGS
    out = tmp_path_factory.mktemp('cams') / 'ckpt'
    save_policy(build_reference(replace(CONFIGS['tiny'], cameras=CAMERAS)), out)
    return out


class Cameras:
    """Publishes cameras at their own rates: raw rgb8 or PNG on .../compressed."""

    def __init__(self, context, compressed=('wrist',)):
        import rclpy
        from qvla_ros_interfaces.msg import ActionChunk, PolicyStatus
        from rclpy.executors import SingleThreadedExecutor
        from std_srvs.srv import SetBool
        self.node = rclpy.create_node('camera_probe', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        n, base = self.node, '/policy_node/image'
        self.pubs = {c: n.create_publisher(CompressedImage, f'{base}/{c}/compressed',
                                           qos.sensor()) if c in compressed else
                     n.create_publisher(Image, f'{base}/{c}', qos.sensor()) for c in CAMERAS}
        self.compressed = set(compressed)
        self.text = n.create_publisher(String, '/policy_node/instruction', qos.latched())
        self.joints = n.create_publisher(JointState, '/policy_node/proprio', qos.sensor())
        self.twists, self.status, self.chunks = [], [], []
        n.create_subscription(TwistStamped, '/policy_node/delta_twist_cmds',
                              lambda m: self.twists.append((time.monotonic(), m)),
                              qos.commands())
        n.create_subscription(PolicyStatus, '/policy_node/policy_status', self.status.append,
                              qos.commands())
        n.create_subscription(ActionChunk, '/policy_node/action_chunk', self.chunks.append,
                              qos.commands())
        self.enable = n.create_client(SetBool, '/policy_node/enable')
        self.SetBool = SetBool
        rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        self.raw = rgb_to_image_fields(rgb)
        self.png = rgb_to_compressed(rgb, 'png')

    def frame(self, camera, stamp_ns):
        if camera in self.compressed:
            msg = CompressedImage(format='png', data=self.png)
        else:
            msg = Image()
            msg.height, msg.width, msg.encoding, msg.step, msg.data = self.raw
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), NS)
        return msg

    def run(self, seconds, rates=None, offsets=None, silent=(), proprio=0):
        """Publish each camera at its rate (Hz), stamps shifted by offsets (s), and spin."""
        rates = rates or {c: 30.0 for c in CAMERAS}
        offsets = offsets or {}
        start = time.monotonic()
        due = {c: start + offsets.get(c, 0.0) for c in CAMERAS}
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            for c in CAMERAS:
                if c not in silent and now >= due[c]:
                    stamp = self.node.get_clock().now().nanoseconds
                    self.pubs[c].publish(self.frame(c, stamp))
                    due[c] += 1.0 / rates[c]
            if proprio:
                js = JointState(position=[0.1] * proprio)
                js.header.stamp = self.node.get_clock().now().to_msg()
                self.joints.publish(js)
            self.executor.spin_once(timeout_sec=0.005)

    def turn_on(self):
        self.text.publish(String(data='push the red block to the left'))
        assert self.enable.wait_for_service(timeout_sec=30)
        # A namesake killed by an earlier test stays on the DDS graph until its lease expires;
        # the node refuses actuation meanwhile, so ask again until it is gone.
        end = time.monotonic() + 40
        while True:
            future = self.enable.call_async(self.SetBool.Request(data=True))
            self.executor.spin_until_future_complete(future, timeout_sec=10)
            result = future.result()
            if result.success or 'another node named' not in result.message or \
                    time.monotonic() > end:
                break
            self.executor.spin_once(timeout_sec=0.5)
        assert result.success, result.message

    def rate(self, since):
        ticks = [t for t, _ in self.twists if t > since]
        return (len(ticks) - 1) / (ticks[-1] - ticks[0]) if len(ticks) > 1 else 0.0


@pytest.fixture
def cams(rclpy_context):
    c = Cameras(rclpy_context)
    yield c
    c.node.destroy_node()


@pytest.mark.ros
def test_two_cameras_at_30_and_15_hz_20_ms_apart_hold_10_hz(
        cams, domain_id, two_camera_model):
    launch = Launch('policy', domain_id=domain_id, overrides=[
        f'model:={two_camera_model}', 'image_timeout:=0.3', 'max_sync_skew:=0.05']).start()
    try:
        cams.turn_on()
        cams.run(3.0, rates={'agentview': 30.0, 'wrist': 15.0}, offsets={'wrist': 0.02})
        since = time.monotonic()
        cams.run(3.0, rates={'agentview': 30.0, 'wrist': 15.0}, offsets={'wrist': 0.02})
        assert cams.rate(since) == pytest.approx(10.0, rel=0.1)
        moving = [m for t, m in cams.twists if t > since]
        assert any(m.twist.linear.x != 0.0 for m in moving), 'no motion from two cameras'
        assert cams.chunks and list(cams.chunks[-1].shape) == [8, 7]
        # The wrist camera stops: zero twist within image_timeout + one tick, named in status.
        stop = time.monotonic()
        cams.run(1.5, silent=('wrist',))
        late = [m for t, m in cams.twists if t > stop + 0.3 + 0.1 + 0.05]
        assert late and all(m.twist.linear.x == m.twist.linear.y == m.twist.linear.z == 0.0
                            for m in late)
        assert any(s.state_name == 'WARN' and "camera 'wrist'" in s.last_error
                   for s in cams.status), sorted({s.last_error for s in cams.status})
        assert launch.poll() is None
    finally:
        launch.stop()


@pytest.mark.ros
def test_cameras_that_do_not_fit_the_model_fail_configure(cams, domain_id, two_camera_model):
    launch = Launch('policy', domain_id=domain_id, overrides=[
        f'model:={two_camera_model}', 'cameras:=[front]']).start()
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not any(
                "the model reads cameras ['agentview', 'wrist']" in s.last_error
                for s in cams.status):
            cams.run(0.2)
        assert any(s.state_name == 'UNCONFIGURED' and 'cameras parameter lists' in s.last_error
                   for s in cams.status)
    finally:
        launch.stop()


@pytest.mark.ros
def test_a_hub_oft_folder_runs_on_two_camera_topics(cams, domain_id, tmp_path, up):
    folder = tmp_path / 'oft'
    up.write_upstream(folder, oft=True)
    launch = Launch('policy', domain_id=domain_id, overrides=[
        f'model:={folder}', 'cameras:=[agentview,wrist]', 'expected_chunk_size:=8',
        'require_proprio:=true']).start()
    try:
        cams.text.publish(String(data='push the red block to the left'))
        end = time.monotonic() + 60
        while time.monotonic() < end and not cams.chunks:
            cams.run(0.3, proprio=8)
        assert cams.chunks, sorted({(s.state_name, s.last_error) for s in cams.status})
        chunk = cams.chunks[-1]
        assert list(chunk.shape) == [8, 7] and np.isfinite(chunk.data).all()
    finally:
        launch.stop()
