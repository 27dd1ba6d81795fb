# Copyright 2026 qvla_ros authors. Apache-2.0.
"""calibration_node across processes: recording, instruction-driven episodes, kill -9."""

import time

from geometry_msgs.msg import TwistStamped
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, String

from qvla_ros.data.rollouts import episodes, read_episode
from qvla_ros.ros import qos
from qvla_ros.ros.launcher import Launch


class Driver:
    """Test-side node: publishes the recorded topics and calls the episode services."""

    def __init__(self, context):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_srvs.srv import SetBool, Trigger
        self.node = rclpy.create_node('calib_driver', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        pre, n = '/calibration_node/', self.node
        self.image = n.create_publisher(Image, pre + 'image', qos.sensor())
        self.text = n.create_publisher(String, pre + 'instruction', qos.latched())
        self.action = n.create_publisher(TwistStamped, pre + 'action', qos.commands())
        self.gripper = n.create_publisher(Float64, pre + 'gripper', qos.commands())
        self.joints = n.create_publisher(JointState, pre + 'proprio', qos.commands())
        self.start = n.create_client(Trigger, pre + 'start_episode')
        self.end = n.create_client(Trigger, pre + 'end_episode')
        self.success = n.create_client(SetBool, pre + 'set_success')
        self.Trigger, self.SetBool = Trigger, SetBool

    def wait_matched(self):
        assert self.end.wait_for_service(timeout_sec=30), 'calibration services never appeared'
        deadline = time.monotonic() + 20
        while (min(p.get_subscription_count() for p in (self.image, self.text, self.action))
               == 0 and time.monotonic() < deadline):
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, client, request, timeout=10.0):
        future = client.call_async(request)
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), f'{client.srv_name} did not answer'
        return future.result()

    def publish_step(self, value=0, vx=0.0, joints=None):
        """Publish one image (all bytes ``value``) and then one action with linear.x ``vx``."""
        img = Image(height=4, width=4, encoding='rgb8', step=12, data=bytes([value]) * 48)
        img.header.stamp = self.node.get_clock().now().to_msg()
        self.image.publish(img)
        if joints is not None:
            js = JointState(position=list(joints))
            js.header.stamp = img.header.stamp
            self.joints.publish(js)
        tw = TwistStamped()
        tw.header.stamp = self.node.get_clock().now().to_msg()
        tw.twist.linear.x = vx
        self.action.publish(tw)
        self.executor.spin_once(timeout_sec=0.0)

    def stream(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.publish_step()
            time.sleep(0.1)


@pytest.fixture
def driver(rclpy_context):
    d = Driver(rclpy_context)
    yield d
    d.node.destroy_node()


def _launch(domain_id, out, *extra):
    return Launch('calibration', domain_id=domain_id,
                  overrides=[f'out_dir:={out}', 'min_free_mb:=1', *extra]).start()


@pytest.mark.ros
def test_records_three_episodes(driver, domain_id, tmp_path):
    out = tmp_path / 'calib'
    launch = _launch(domain_id, out, 'proprio_dim:=2')
    published = []
    try:
        driver.wait_matched()
        k = 0
        for ep, text in enumerate(('push the red block', 'stack green on blue',
                                   'push the blue block')):
            driver.text.publish(String(data=text))
            driver.executor.spin_once(timeout_sec=0.2)
            assert driver.call(driver.start, driver.Trigger.Request()).success
            actions = []
            for tick in range(30):  # 30 Hz: an action after every third image
                if tick % 3 == 2:
                    k += 1
                    driver.publish_step(tick, 0.1 * k, joints=(ep, tick))
                    driver.gripper.publish(Float64(data=float(ep)))
                    actions.append((0.01 * k, tick))
                else:
                    img = Image(height=4, width=4, encoding='rgb8', step=12,
                                data=bytes([tick]) * 48)
                    img.header.stamp = driver.node.get_clock().now().to_msg()
                    driver.image.publish(img)
                time.sleep(1 / 30)
            time.sleep(0.3)
            if ep == 1:
                assert driver.call(driver.success, driver.SetBool.Request(data=True)).success
            result = driver.call(driver.end, driver.Trigger.Request())
            assert result.success, result.message
            published.append((text, actions))
        assert launch.poll() is None
    finally:
        launch.stop()
    entries = episodes(out)
    assert [e['instruction'] for e in entries] == [t for t, _ in published]
    assert [e['success'] for e in entries] == [None, True, None]
    for entry, (_, actions) in zip(entries, published):
        data = read_episode(out, entry)
        got = data['action'][:, 0]
        expected = np.array([a for a, _ in actions], np.float32)
        assert len(got) >= len(expected) - 1  # the very first may precede any image
        np.testing.assert_allclose(got, expected[len(expected) - len(got):], rtol=1e-5)
        ticks = [t for _, t in actions][len(expected) - len(got):]
        assert [int(v) for v in data['image.front'][:, 0, 0, 0]] == ticks
        assert data['proprio'].shape == (len(got), 2)


def _record_first_episode(driver):
    """Start an episode named 'first episode' and stream it for a second."""
    driver.wait_matched()
    driver.text.publish(String(data='first episode'))
    assert driver.call(driver.start, driver.Trigger.Request()).success
    driver.stream(1.0)


@pytest.mark.ros
def test_kill_9_loses_only_the_episode_in_progress(driver, domain_id, tmp_path):
    out = tmp_path / 'calib'
    launch = _launch(domain_id, out, 'proprio_type:=none')
    try:
        _record_first_episode(driver)
        time.sleep(0.2)
        assert driver.call(driver.end, driver.Trigger.Request()).success
        assert driver.call(driver.start, driver.Trigger.Request()).success
        driver.stream(0.5)
        launch.procs[0].kill()  # SIGKILL mid-episode
        launch.procs[0].wait(timeout=10)
    finally:
        launch.stop()
    entries = episodes(out)
    assert [e['instruction'] for e in entries] == ['first episode']
    assert read_episode(out, entries[0])['action'].shape[0] >= 8
    assert not list(out.rglob('*.tmp'))


@pytest.mark.ros
def test_auto_split_on_instruction_change(driver, domain_id, tmp_path):
    out = tmp_path / 'auto'
    launch = _launch(domain_id, out, 'proprio_type:=none', 'auto_split:=true')
    try:
        driver.wait_matched()
        for text in ('push the red block', 'push the blue block', 'push the red block'):
            driver.text.publish(String(data=text))
            driver.stream(1.0)
        deadline = time.monotonic() + 15  # the last switch is written when it is processed
        while time.monotonic() < deadline and (
                not (out / 'dataset.json').is_file() or len(episodes(out)) < 2):
            time.sleep(0.1)
        assert launch.poll() is None
    finally:
        launch.stop()
    # The third instruction closed the second episode; the third is still in progress.
    got = [(e['instruction'], e['num_steps']) for e in episodes(out)]
    assert [g[0] for g in got] == ['push the red block', 'push the blue block'], got


@pytest.mark.ros
def test_another_writer_of_the_recording_dataset_is_refused(driver, domain_id, tmp_path):
    """What `qvla calibrate from-bag` into the node's folder meets: the writer lock."""
    out = tmp_path / 'calib'
    launch = _launch(domain_id, out, 'proprio_type:=none')
    try:
        _record_first_episode(driver)
        from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
        with pytest.raises(ValueError, match='is held by process'):
            RolloutWriter(out, DatasetInfo(7, 0, 10.0, ('front',)))
        time.sleep(0.2)
        assert driver.call(driver.end, driver.Trigger.Request()).success
        assert launch.poll() is None
    finally:
        launch.stop()
    assert [e['instruction'] for e in episodes(out)] == ['first episode']


@pytest.mark.ros
def test_records_two_cameras_raw_and_compressed(driver, domain_id, tmp_path):
    from sensor_msgs.msg import CompressedImage
    from qvla_ros.data.images import rgb_to_compressed
    from qvla_ros.data.rollouts import read_info
    out = tmp_path / 'two'
    launch = _launch(domain_id, out, 'proprio_type:=none', 'cameras:=[agentview,wrist]')
    node = driver.node
    raw = node.create_publisher(Image, '/calibration_node/image/agentview', qos.sensor())
    png = node.create_publisher(CompressedImage, '/calibration_node/image/wrist/compressed',
                                qos.sensor())
    try:
        assert driver.end.wait_for_service(timeout_sec=30)
        deadline = time.monotonic() + 20
        while (min(raw.get_subscription_count(), png.get_subscription_count(),
                   driver.action.get_subscription_count()) == 0
               and time.monotonic() < deadline):
            driver.executor.spin_once(timeout_sec=0.05)
        driver.text.publish(String(data='push the red block'))
        driver.executor.spin_once(timeout_sec=0.2)
        assert driver.call(driver.start, driver.Trigger.Request()).success
        for tick in range(12):
            stamp = node.get_clock().now().to_msg()
            img = Image(height=4, width=4, encoding='rgb8', step=12, data=bytes([tick]) * 48)
            img.header.stamp = stamp
            raw.publish(img)
            comp = CompressedImage(format='png', data=rgb_to_compressed(
                np.full((4, 4, 3), 100 + tick, np.uint8), 'png'))
            comp.header.stamp = stamp
            png.publish(comp)
            tw = TwistStamped()
            tw.header.stamp = node.get_clock().now().to_msg()
            tw.twist.linear.x = 0.1
            driver.action.publish(tw)
            driver.executor.spin_once(timeout_sec=0.0)
            time.sleep(0.1)
        time.sleep(0.3)
        result = driver.call(driver.end, driver.Trigger.Request())
        assert result.success, result.message
    finally:
        launch.stop()
    assert read_info(out).cameras == ('agentview', 'wrist')
    data = read_episode(out, episodes(out)[0])
    a, w = data['image.agentview'][:, 0, 0, 0], data['image.wrist'][:, 0, 0, 0]
    assert len(a) >= 8 and list(w - a) == [100] * len(a)  # the same moment from both
