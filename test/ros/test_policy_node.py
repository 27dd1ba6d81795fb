# Copyright 2026 qvla_ros authors. Apache-2.0.
"""policy_node across processes: dry run until enabled, commands at control_hz, a prompt stop."""

import time

from geometry_msgs.msg import TwistStamped
import pytest

from qvla_ros.ros import qos
from qvla_ros.ros.launcher import Launch


def _spin_for(executor, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)


@pytest.mark.ros
def test_dry_run_then_enabled_rate(rclpy_context, domain_id):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from qvla_ros_interfaces.msg import ActionChunk
    from std_srvs.srv import SetBool
    launch = Launch('demo', domain_id=domain_id).start()
    node = rclpy.create_node('policy_probe', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    twists, chunks = [], []
    node.create_subscription(TwistStamped, '/policy_node/delta_twist_cmds',
                             lambda m: twists.append((time.monotonic(), m)), qos.commands())
    node.create_subscription(ActionChunk, '/policy_node/action_chunk', chunks.append,
                             qos.commands())
    client = node.create_client(SetBool, '/policy_node/enable')
    try:
        assert client.wait_for_service(timeout_sec=30), 'policy_node/enable never appeared'
        deadline = time.monotonic() + 30
        while not chunks and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert chunks, 'no ActionChunk published in dry run'
        _spin_for(executor, 1.5)
        assert twists == [], 'policy_node actuated while disabled (dry run)'
        future = client.call_async(SetBool.Request(data=True))
        executor.spin_until_future_complete(future, timeout_sec=10)
        assert future.result().success
        _spin_for(executor, 0.5)
        start = len(twists)
        _spin_for(executor, 3.0)
        window = [t for t, _ in twists[start:]]
        rate = (len(window) - 1) / (window[-1] - window[0])
        assert rate == pytest.approx(10.0, rel=0.1), f'control rate {rate:.2f} Hz'
        # ~/enable false answers within a tick (the node does not block its loop on the
        # subscribers' acknowledgements), and its last command is a zero twist.
        future = client.call_async(SetBool.Request(data=False))
        asked = time.monotonic()
        executor.spin_until_future_complete(future, timeout_sec=10)
        answered = time.monotonic() - asked
        assert future.result().success
        assert answered < 0.25, f'~/enable false took {answered:.2f} s'
        _spin_for(executor, 0.5)
        last = twists[-1][1].twist
        assert (last.linear.x, last.linear.y, last.linear.z) == (0.0, 0.0, 0.0)
        assert launch.poll() is None
        chunk = chunks[-1]
        assert list(chunk.shape) == [8, 7] and len(chunk.data) == 56
    finally:
        node.destroy_node()
        launch.stop()


@pytest.mark.ros
def test_serves_a_packed_quantized_checkpoint(rclpy_context, domain_id, quantized_toy):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from qvla_ros_interfaces.msg import ActionChunk
    ckpt, plan = quantized_toy
    launch = Launch('demo', domain_id=domain_id, overrides=[f'model:={ckpt}']).start()
    node = rclpy.create_node('quant_probe', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    chunks = []
    node.create_subscription(ActionChunk, '/policy_node/action_chunk', chunks.append,
                             qos.commands())
    try:
        deadline = time.monotonic() + 40
        while not chunks and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert chunks, 'policy_node published no chunk from the quantized checkpoint'
        assert chunks[0].model_id == str(ckpt) and len(chunks[0].data) == 56
        from qvla_ros.quant.artifacts import QuantPlan
        assert chunks[0].plan_id == QuantPlan.load(plan).plan_id
        assert launch.poll() is None
    finally:
        node.destroy_node()
        launch.stop()


@pytest.mark.ros
@pytest.mark.parametrize('local_policy', [{'execute_steps': 3}], indirect=True)
def test_control_keeps_ticking_while_the_model_plans(probe, local_policy):
    # 3 of the toy's 8 actions run before each replan: 5 remain to command while it plans
    probe.drive()
    real, windows = local_policy._policy.predict, []

    def slow(obs):  # a forward pass of 0.5 s (sleep, like torch's kernels, frees the GIL)
        start = time.monotonic()
        time.sleep(0.5)
        windows.append((start, time.monotonic()))
        return real(obs)
    local_policy._policy.predict = slow
    probe.spin(2.5)
    assert windows, 'the node did not plan in 2.5 s'
    ticks = [sum(a < t < b for t in local_policy._ticks) for a, b in windows]
    assert max(ticks) >= 3, f'control ticks during each 0.5 s plan: {ticks}'
    commands = [sum(a < t < b for t, _ in probe.twists) for a, b in windows]
    assert max(commands) >= 2, f'commands received during each 0.5 s plan: {commands}'


@pytest.mark.ros
def test_a_plan_made_for_a_replaced_instruction_is_dropped(probe, local_policy):
    import threading
    probe.drive()
    node, planning, plans, tags = local_policy, threading.Event(), [], {}
    real, add = node._policy.predict, node._schedule.add

    def slow(obs):
        planning.set()
        time.sleep(0.5)
        chunk = real(obs)
        tags[id(chunk)] = obs.instruction
        return chunk

    def record(chunk, t0_ns, epoch=None):
        plans.append((tags.get(id(chunk)), add(chunk, t0_ns, epoch)))
        return plans[-1][1]
    node._policy.predict, node._schedule.add = slow, record
    end = time.monotonic() + 10
    while not planning.is_set() and time.monotonic() < end:
        probe.spin(0.05)
    probe.instruct('push the blue block to the right')
    probe.spin(2.0)
    old = 'push the red block to the left'
    assert (old, False) in plans, plans  # planned before the change, dropped after it
    assert all(kept is False for text, kept in plans if text == old), plans
    assert ('push the blue block to the right', True) in plans, plans
