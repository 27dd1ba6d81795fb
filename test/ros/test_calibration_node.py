# Copyright 2026 qvla_ros authors. Apache-2.0.
"""calibration_node across processes: three episodes recorded equal to what was published."""

import time

from geometry_msgs.msg import TwistStamped
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, String

from qvla_ros.data.rollouts import episodes, read_episode
from qvla_ros.ros import qos
from qvla_ros.ros.launcher import Launch


def _call(node, executor, client, request, timeout=10.0):
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout)
    assert future.done(), f'{client.srv_name} did not answer'
    return future.result()


@pytest.mark.ros
def test_records_three_episodes(rclpy_context, domain_id, tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import SetBool, Trigger
    out = tmp_path / 'calib'
    launch = Launch('calibration', domain_id=domain_id,
                    overrides=[f'out_dir:={out}', 'min_free_mb:=1', 'proprio_dim:=2']).start()
    node = rclpy.create_node('calib_driver', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    pre = '/calibration_node/'
    img_pub = node.create_publisher(Image, pre + 'image', qos.sensor())
    txt_pub = node.create_publisher(String, pre + 'instruction', qos.latched())
    act_pub = node.create_publisher(TwistStamped, pre + 'action', qos.commands())
    grip_pub = node.create_publisher(Float64, pre + 'gripper', qos.commands())
    joint_pub = node.create_publisher(JointState, pre + 'proprio', qos.commands())
    start = node.create_client(Trigger, pre + 'start_episode')
    end = node.create_client(Trigger, pre + 'end_episode')
    success = node.create_client(SetBool, pre + 'set_success')
    published = []
    try:
        assert end.wait_for_service(timeout_sec=30), 'calibration_node services never appeared'
        deadline = time.monotonic() + 20
        while (min(p.get_subscription_count() for p in (img_pub, act_pub, joint_pub)) == 0
               and time.monotonic() < deadline):
            executor.spin_once(timeout_sec=0.05)
        k = 0
        for ep, text in enumerate(('push the red block', 'stack green on blue',
                                   'push the blue block')):
            txt_pub.publish(String(data=text))
            executor.spin_once(timeout_sec=0.2)
            assert _call(node, executor, start, Trigger.Request()).success
            actions = []
            for tick in range(30):
                now = node.get_clock().now().to_msg()
                img = Image(height=4, width=4, encoding='rgb8', step=12,
                            data=bytes([tick % 256]) * 48)
                img.header.stamp = now
                img_pub.publish(img)
                js = JointState(position=[float(ep), float(tick)])
                js.header.stamp = now
                joint_pub.publish(js)
                if tick % 3 == 2:
                    k += 1
                    tw = TwistStamped()
                    tw.header.stamp = node.get_clock().now().to_msg()
                    tw.twist.linear.x = 0.1 * k
                    act_pub.publish(tw)
                    grip_pub.publish(Float64(data=float(ep)))
                    actions.append((0.01 * k, tick))
                executor.spin_once(timeout_sec=0.0)
                time.sleep(1 / 30)
            time.sleep(0.3)
            if ep == 1:
                assert _call(node, executor, success, SetBool.Request(data=True)).success
            result = _call(node, executor, end, Trigger.Request())
            assert result.success, result.message
            published.append((text, actions))
        assert launch.poll() is None
    finally:
        node.destroy_node()
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


@pytest.mark.ros
def test_kill_9_loses_only_the_episode_in_progress(rclpy_context, domain_id, tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import Trigger
    out = tmp_path / 'calib'
    launch = Launch('calibration', domain_id=domain_id,
                    overrides=[f'out_dir:={out}', 'min_free_mb:=1', 'proprio_type:=none']).start()
    node = rclpy.create_node('calib_killer', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    pre = '/calibration_node/'
    img_pub = node.create_publisher(Image, pre + 'image', qos.sensor())
    txt_pub = node.create_publisher(String, pre + 'instruction', qos.latched())
    act_pub = node.create_publisher(TwistStamped, pre + 'action', qos.commands())
    start = node.create_client(Trigger, pre + 'start_episode')
    end = node.create_client(Trigger, pre + 'end_episode')

    def stream(seconds):
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            img = Image(height=2, width=2, encoding='rgb8', step=6, data=bytes(12))
            img.header.stamp = node.get_clock().now().to_msg()
            img_pub.publish(img)
            tw = TwistStamped()
            tw.header.stamp = node.get_clock().now().to_msg()
            act_pub.publish(tw)
            executor.spin_once(timeout_sec=0.0)
            time.sleep(0.1)
    try:
        assert end.wait_for_service(timeout_sec=30)
        deadline = time.monotonic() + 20
        while act_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        txt_pub.publish(String(data='first episode'))
        assert _call(node, executor, start, Trigger.Request()).success
        stream(1.0)
        time.sleep(0.2)
        assert _call(node, executor, end, Trigger.Request()).success
        assert _call(node, executor, start, Trigger.Request()).success
        stream(0.5)
        launch.procs[0].kill()  # SIGKILL mid-episode
        launch.procs[0].wait(timeout=10)
    finally:
        node.destroy_node()
        launch.stop()
    entries = episodes(out)
    assert [e['instruction'] for e in entries] == ['first episode']
    assert read_episode(out, entries[0])['action'].shape[0] >= 8
    assert not list(out.rglob('*.tmp'))


@pytest.mark.ros
def test_auto_split_on_instruction_change(rclpy_context, domain_id, tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    out = tmp_path / 'auto'
    launch = Launch('calibration', domain_id=domain_id,
                    overrides=[f'out_dir:={out}', 'min_free_mb:=1', 'proprio_type:=none',
                               'auto_split:=true']).start()
    node = rclpy.create_node('calib_auto', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    pre = '/calibration_node/'
    img_pub = node.create_publisher(Image, pre + 'image', qos.sensor())
    txt_pub = node.create_publisher(String, pre + 'instruction', qos.latched())
    act_pub = node.create_publisher(TwistStamped, pre + 'action', qos.commands())
    try:
        deadline = time.monotonic() + 30
        while (min(p.get_subscription_count() for p in (img_pub, txt_pub, act_pub)) == 0
               and time.monotonic() < deadline):
            executor.spin_once(timeout_sec=0.05)
        for text in ('push the red block', 'push the blue block', 'push the red block'):
            txt_pub.publish(String(data=text))
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                img = Image(height=2, width=2, encoding='rgb8', step=6, data=bytes(12))
                img.header.stamp = node.get_clock().now().to_msg()
                img_pub.publish(img)
                tw = TwistStamped()
                tw.header.stamp = node.get_clock().now().to_msg()
                act_pub.publish(tw)
                executor.spin_once(timeout_sec=0.0)
                time.sleep(0.1)
        deadline = time.monotonic() + 15  # the last switch is written when it is processed
        while time.monotonic() < deadline and (
                not (out / 'dataset.json').is_file() or len(episodes(out)) < 2):
            time.sleep(0.1)
        assert launch.poll() is None
    finally:
        node.destroy_node()
        launch.stop()
    # The third instruction closed the second episode; the third is still in progress.
    got = [(e['instruction'], e['num_steps']) for e in episodes(out)]
    assert [e['instruction'] for e in episodes(out)] == ['push the red block',
                                                         'push the blue block'], got
