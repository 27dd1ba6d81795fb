# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The policy node's health as ``~/policy_status`` and as a ``/diagnostics`` entry."""

from typing import Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from qvla_ros_interfaces.msg import PolicyStatus

STATE_NAMES = {PolicyStatus.UNCONFIGURED: 'UNCONFIGURED', PolicyStatus.INACTIVE: 'INACTIVE',
               PolicyStatus.DRY_RUN: 'DRY_RUN', PolicyStatus.ACTIVE: 'ACTIVE',
               PolicyStatus.WARN: 'WARN', PolicyStatus.ERROR: 'ERROR'}


def control_rate(ticks: Sequence[float]) -> float:
    """Return the rate (Hz) of monotonic tick times; 0 with fewer than two distinct ones."""
    if len(ticks) < 2 or ticks[-1] <= ticks[0]:
        return 0.0
    return (len(ticks) - 1) / (ticks[-1] - ticks[0])


def policy_status(health: int, model_id: str, plan_id: str, latencies_s: Sequence[float],
                  rate_hz: float, frames_dropped: int, last_error: str) -> PolicyStatus:
    """Return the status message (latency percentiles in ms; 0 before the first inference)."""
    lat = np.array(latencies_s) * 1e3 if len(latencies_s) else np.zeros(1)
    return PolicyStatus(state=health, state_name=STATE_NAMES[health], model_id=model_id,
                        plan_id=plan_id, latency_p50_ms=float(np.percentile(lat, 50)),
                        latency_p99_ms=float(np.percentile(lat, 99)),
                        control_rate_hz=float(rate_hz), frames_dropped=frames_dropped,
                        last_error=last_error)


def diagnostics(status: PolicyStatus) -> DiagnosticArray:
    """Return ``status`` as one ``qvla_ros/policy_node`` entry of a DiagnosticArray."""
    level = {PolicyStatus.WARN: DiagnosticStatus.WARN, PolicyStatus.ERROR:
             DiagnosticStatus.ERROR}.get(status.state, DiagnosticStatus.OK)
    values = [KeyValue(key=k, value=str(v)) for k, v in (
        ('latency_p50_ms', f'{status.latency_p50_ms:.2f}'),
        ('latency_p99_ms', f'{status.latency_p99_ms:.2f}'),
        ('control_rate_hz', f'{status.control_rate_hz:.2f}'),
        ('frames_dropped', status.frames_dropped),
        ('plan_id', status.plan_id), ('last_error', status.last_error))]
    diag = DiagnosticArray()
    diag.header.stamp = status.header.stamp
    diag.status = [DiagnosticStatus(level=level, name='qvla_ros/policy_node',
                                    message=status.state_name, hardware_id=status.model_id,
                                    values=values)]
    return diag
