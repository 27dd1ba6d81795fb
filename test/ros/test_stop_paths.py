# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Every way actuation stops ends with a zero twist seen by another process."""

import contextlib
import signal
import time

import pytest

from qvla_ros.ros.launcher import Launch


def _policy(domain_id, *overrides):
    return Launch('policy', domain_id=domain_id, overrides=list(overrides)).start()


def _assert_stopped_with_zero(probe, since):
    late = [m for t, m in probe.twists if t > since]
    assert late, 'no command reached the subscriber after the stop'
    assert probe.is_zero(late[-1]), f'the last command is not a zero twist: {late[-1].twist}'


def _enable_false(probe, launch):
    assert probe.set_enabled(False).success


def _signal(sig):
    def stop(probe, launch):
        launch.procs[0].send_signal(sig)
        assert launch.procs[0].wait(10) == 0
    return stop


def _transition(name):
    def stop(probe, launch):
        from lifecycle_msgs.msg import Transition
        ids = {'deactivate': Transition.TRANSITION_DEACTIVATE,
               'shutdown': Transition.TRANSITION_ACTIVE_SHUTDOWN}
        assert probe.transition(ids[name])
    return stop


def _camera_stops(probe, launch):
    probe.spin(1.5, camera=False)


STOPS = {'enable_false': _enable_false, 'sigint': _signal(signal.SIGINT),
         'sigterm': _signal(signal.SIGTERM), 'sighup': _signal(signal.SIGHUP),
         'deactivate': _transition('deactivate'), 'shutdown': _transition('shutdown'),
         'watchdog': _camera_stops}


@pytest.mark.ros
@pytest.mark.parametrize('path', sorted(STOPS))
def test_every_stop_ends_with_a_zero_twist(probe, domain_id, path):
    launch = _policy(domain_id, 'image_timeout:=0.3')
    try:
        probe.drive()
        since = time.monotonic()
        STOPS[path](probe, launch)
        probe.spin(1.0, camera=path != 'watchdog')
        _assert_stopped_with_zero(probe, since)
        if path in ('enable_false', 'deactivate', 'shutdown', 'watchdog'):
            assert launch.poll() is None, 'the node died'
    finally:
        launch.stop()


@pytest.mark.ros
def test_cleanup_after_deactivate_sends_no_motion(probe, domain_id):
    from lifecycle_msgs.msg import Transition
    launch = _policy(domain_id)
    try:
        probe.drive()
        assert probe.transition(Transition.TRANSITION_DEACTIVATE)
        assert probe.transition(Transition.TRANSITION_CLEANUP)
        since = time.monotonic()
        probe.spin(1.0)
        assert all(probe.is_zero(m) for t, m in probe.twists if t > since)
        assert not probe.set_enabled(True).success, 'an unconfigured node accepted enable'
    finally:
        launch.stop()


@contextlib.contextmanager
def _policies(domain_id):
    """Yield a function that starts a policy node; stop every one started on the way out."""
    started = []
    try:
        yield lambda *overrides: started.append(_policy(domain_id, *overrides)) or started[-1]
    finally:
        for launch in started:
            launch.stop()


def _clash_reported(probe, states):
    assert probe.wait_status(lambda s: s.state_name in states
                             and 'another node named /policy_node' in s.last_error, 30), \
        sorted({(s.state_name, s.last_error) for s in probe.status})


@pytest.mark.ros
def test_a_second_node_of_the_same_name_refuses_to_activate(probe, domain_id):
    with _policies(domain_id) as start:
        start()
        probe.drive()
        # on a loaded 2-core machine discovery of the first node took over the 1 s default
        second = start('discovery_wait:=5.0')
        _clash_reported(probe, ('INACTIVE', 'UNCONFIGURED'))
        assert second.poll() is None, 'the second node died instead of reporting the clash'


@pytest.mark.ros
def test_a_dry_running_node_reports_a_namesake_and_refuses_enable(probe, domain_id):
    with _policies(domain_id) as start:
        start()
        probe.wait_running()
        probe.instruct()
        start('autostart:=false')
        _clash_reported(probe, ('ERROR',))
        assert not probe.set_enabled(True).success, 'a node with a namesake accepted enable'


@pytest.mark.ros
def test_an_actuating_node_stops_on_a_namesake_and_stays_in_error(probe, domain_id):
    with _policies(domain_id) as start:
        start()
        probe.drive()
        since = time.monotonic()
        start('autostart:=false')  # stays unconfigured: only the first node runs and commands
        _clash_reported(probe, ('ERROR',))
        probe.spin(1.0)
        _assert_stopped_with_zero(probe, since)
        clashed, seen = time.monotonic(), len(probe.status)
        probe.spin(3.0)  # three status periods, thirty control ticks
        # the namesake publishes UNCONFIGURED on the same topic
        later = [s.state_name for s in probe.status[seen:] if s.state_name != 'UNCONFIGURED']
        assert len(later) >= 2 and set(later) == {'ERROR'}, \
            f'the node left ERROR with its namesake still there: {later}'
        assert all(probe.is_zero(m) for t, m in probe.twists if t > clashed), \
            'the node commanded motion with a namesake on the graph'


@pytest.mark.ros
def test_an_inference_error_ends_with_a_zero_twist(probe, local_policy):
    probe.drive()

    def broken(obs):
        raise RuntimeError('CUDA error: an illegal memory access was encountered')
    local_policy._policy.predict = broken
    since = time.monotonic()
    probe.spin(1.5)
    _assert_stopped_with_zero(probe, since)
    assert probe.wait_status(lambda s: 'model error' in s.last_error, 3)


@pytest.mark.ros
def test_a_destroyed_node_leaves_the_graph(probe):
    import rclpy
    from qvla_ros.ros.policy_node import PolicyNode
    context = rclpy.Context()
    rclpy.init(context=context)
    node = PolicyNode(context=context)
    node.trigger_configure()
    try:
        names = probe.node.get_node_names_and_namespaces
        end = time.monotonic() + 10
        while ('policy_node', '/') not in names() and time.monotonic() < end:
            probe.spin(0.1, camera=False)
        assert ('policy_node', '/') in names()
    finally:
        node.destroy_node()
        context.try_shutdown()
    end = time.monotonic() + 5  # a ghost would block a restarted namesake from activating
    while ('policy_node', '/') in names() and time.monotonic() < end:
        probe.spin(0.1, camera=False)
    assert ('policy_node', '/') not in names(), 'the destroyed node stayed on the graph'


def _qvla_ros(probe, *args):
    """Run ``qvla-ros`` in another process while the probe keeps the camera going."""
    import subprocess
    import sys
    from pathlib import Path
    exe = str(Path(sys.executable).parent / 'qvla-ros')
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    end = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < end:
        probe.spin(0.2)
    return proc.wait(1), proc.stdout.read()


@pytest.mark.ros
def test_qvla_ros_enable_switches_actuation_from_another_process(probe, domain_id):
    launch = _policy(domain_id, 'image_timeout:=1.0')
    try:
        probe.wait_running()
        probe.instruct()
        code, out = _qvla_ros(probe, 'enable', 'on', '--domain-id', str(domain_id))
        assert code == 0 and 'actuation on' in out, out
        probe.spin(2.0)
        assert any(not probe.is_zero(m) for _, m in probe.twists), 'enabled but never moved'
        code, out = _qvla_ros(probe, 'enable', 'off', '--domain-id', str(domain_id))
        since = time.monotonic()
        assert code == 0 and 'actuation off' in out, out
        probe.spin(1.5)  # frames keep coming: only the switch keeps the robot still
        late = [m for t, m in probe.twists if t > since]
        assert all(probe.is_zero(m) for m in late), 'motion after actuation was switched off'
        code, out = _qvla_ros(probe, 'enable', 'on', '--node', '/nobody', '--timeout', '1',
                              '--domain-id', str(domain_id))
        assert code == 2 and len(out.strip().splitlines()) == 1, out
        assert '/nobody/enable did not appear' in out
    finally:
        launch.stop()
