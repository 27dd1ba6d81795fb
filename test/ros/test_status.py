# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The policy node's status message and its diagnostics entry."""

from diagnostic_msgs.msg import DiagnosticStatus
import pytest
from qvla_ros_interfaces.msg import PolicyStatus

from qvla_ros.ros.status import control_rate, diagnostics, policy_status


def test_control_rate_counts_intervals():
    assert control_rate([0.0, 0.1, 0.2, 0.3]) == pytest.approx(10.0)
    assert control_rate([5.0]) == 0.0 and control_rate([]) == 0.0
    assert control_rate([1.0, 1.0]) == 0.0  # no time has passed: no rate, not a division


def test_status_reports_latency_in_ms_and_zero_before_inference():
    s = policy_status(PolicyStatus.ACTIVE, 'm', 'p', [0.010, 0.020, 0.030], 9.5, 3, '')
    assert s.state_name == 'ACTIVE' and s.latency_p50_ms == pytest.approx(20.0)
    assert s.latency_p99_ms == pytest.approx(29.8) and s.frames_dropped == 3
    empty = policy_status(PolicyStatus.DRY_RUN, 'm', '', [], 0.0, 0, '')
    assert empty.latency_p50_ms == 0.0 and empty.state_name == 'DRY_RUN'


@pytest.mark.parametrize('state,level', [(PolicyStatus.ACTIVE, DiagnosticStatus.OK),
                                         (PolicyStatus.WARN, DiagnosticStatus.WARN),
                                         (PolicyStatus.ERROR, DiagnosticStatus.ERROR)])
def test_diagnostics_level_follows_the_state(state, level):
    s = policy_status(state, 'ckpt', 'abc', [0.01], 10.0, 0, 'stale camera')
    entry, = diagnostics(s).status
    assert entry.level == level and entry.hardware_id == 'ckpt'
    values = {kv.key: kv.value for kv in entry.values}
    assert values['plan_id'] == 'abc' and values['last_error'] == 'stale camera'
    assert values['control_rate_hz'] == '10.00'
