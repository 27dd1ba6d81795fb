# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Action schedules and safety limits."""

import numpy as np
import pytest

from qvla_ros.core.types import ActionChunk
from qvla_ros.runtime.chunking import ActionSchedule, ScheduleSpec
from qvla_ros.runtime.safety import ActionLimits

DT = 100_000_000  # 0.1 s in ns


def _chunk(value, h=8):
    return ActionChunk(np.full((h, 2), value, np.float32) + np.arange(h)[:, None], 0.1)


def test_replan_executes_k_steps_then_asks_for_a_plan():
    s = ActionSchedule(ScheduleSpec('replan', execute_steps=3))
    assert s.needs_plan(0) and s.action_at(0) is None
    s.add(_chunk(0.0), 0)
    assert [s.action_at(i * DT)[0] for i in range(3)] == [0.0, 1.0, 2.0]
    assert not s.needs_plan(2 * DT) and s.needs_plan(3 * DT)  # after exactly 3 actions
    # A late replan keeps executing the old chunk instead of stalling.
    assert s.action_at(4 * DT)[0] == 4.0
    s.add(_chunk(10.0), 4 * DT)
    assert s.action_at(4 * DT)[0] == 10.0
    assert s.action_at(20 * DT) is None  # beyond every horizon


@pytest.mark.parametrize('aggregator,expected', [
    ('latest', 20.0), ('mean', (2.0 + 11.0 + 20.0) / 3),
    ('exp', (2.0 + np.exp(-0.5) * 11.0 + np.exp(-1.0) * 20.0) / (1 + np.exp(-0.5) + np.exp(-1)))])
def test_temporal_ensembling(aggregator, expected):
    s = ActionSchedule(ScheduleSpec('ensemble', aggregator=aggregator, decay=0.5))
    for k, value in enumerate((0.0, 10.0, 20.0)):
        s.add(_chunk(value), k * DT)  # at t = 2: steps 2, 1, 0 of the three chunks
    assert s.needs_plan(2 * DT)
    assert s.action_at(2 * DT)[0] == pytest.approx(expected)


def test_spec_and_limits_validation():
    with pytest.raises(ValueError, match='schedule mode'):
        ScheduleSpec('later')
    with pytest.raises(ValueError, match='aggregator'):
        ScheduleSpec(aggregator='median')
    lim = ActionLimits((-1.0, -1.0), (1.0, 1.0))
    np.testing.assert_array_equal(lim.apply(np.array([2.0, -3.0])), [1.0, -1.0])
    assert lim.apply(np.array([np.nan, 0.0])) is None
    with pytest.raises(ValueError, match='model predicts 7'):
        lim.check_dim(7)
    with pytest.raises(ValueError, match='<='):
        ActionLimits((1.0,), (0.0,))


def test_the_checkpoint_schedule_and_its_overrides():
    from qvla_ros.runtime.chunking import checkpoint_schedule

    class Policy:
        qvla_schedule = None

        def metadata(self):
            return {'chunk_size': 8}
    p = Policy()
    assert checkpoint_schedule(p) == ScheduleSpec('replan', 8)  # the whole chunk by default
    p.qvla_schedule = ScheduleSpec('replan', 6).to_dict()
    assert checkpoint_schedule(p) == ScheduleSpec('replan', 6)
    assert checkpoint_schedule(p, execute_steps=2) == ScheduleSpec('replan', 2)
    assert checkpoint_schedule(p, mode='ensemble').mode == 'ensemble'


def test_actions_map_to_the_twist_and_gripper_by_name():
    from qvla_ros.runtime.action_map import EndEffectorMap
    names = ('gripper', 'yaw', 'x', 'y', 'z', 'roll', 'pitch')  # any order
    m = EndEffectorMap.from_names(names)
    action = np.array([1.0, 0.3, 0.01, 0.02, 0.03, 0.1, 0.2])
    lin, ang = m.velocities(action, 0.1)
    np.testing.assert_allclose(lin, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(ang, [1.0, 2.0, 3.0])
    assert m.gripper_value(action) == 1.0
    no_rotation = EndEffectorMap.from_names(('x', 'y', 'z'))
    assert no_rotation.angular is None and no_rotation.gripper_value(action) is None
    with pytest.raises(ValueError, match=r"need \['x', 'y', 'z'\] \(missing \['z'\]\)"):
        EndEffectorMap.from_names(('x', 'y', 'left_arm_0'))
    with pytest.raises(ValueError, match='not at all'):
        EndEffectorMap.from_names(())


def test_jittered_ticks_run_each_step_once_and_the_plan_is_ready_in_time():
    """A node's ticks: the plan starts at the tick, the first action waits for inference."""
    s = ActionSchedule(ScheduleSpec('replan', execute_steps=8))
    ms = 1_000_000
    ran, plans = [], 0
    for k in range(24):
        tick = k * DT + (3 * ms if k % 2 else -2 * ms)  # +-3 ms of timer jitter
        if s.needs_plan(tick):  # the inference timer runs first in the same cycle
            s.add(_chunk(100.0 * plans), tick + ms)  # stamped when inference starts
            plans += 1
            tick += 30 * ms  # the control tick waits for the 30 ms inference
        ran.append(float(s.action_at(tick)[0]))
    assert plans == 3  # exactly 8 actions of each chunk, none lost at a chunk boundary
    assert ran == [100.0 * c + i for c in range(3) for i in range(8)]


def test_a_slow_plan_skips_the_steps_whose_time_has_passed():
    s = ActionSchedule(ScheduleSpec('replan', execute_steps=8))
    s.add(_chunk(0.0), 0)
    assert s.action_at(2 * DT + DT // 4)[0] == 2.0  # 225 ms after its observation
    assert s.action_at(3 * DT + DT // 4)[0] == 3.0
    assert s.action_at(5 * DT + DT // 4)[0] == 5.0  # a missed tick is skipped, not delayed


@pytest.mark.parametrize('mode', ['replan', 'ensemble'])
def test_a_plan_started_before_a_clear_is_dropped(mode):
    s = ActionSchedule(ScheduleSpec(mode, execute_steps=3))
    s.add(_chunk(0.0), 0)
    started = s.epoch  # an observation is taken, the model runs ...
    s.clear()  # ... and meanwhile the instruction changes
    assert not s.add(_chunk(5.0), 0, started)
    assert s.action_at(0) is None and s.needs_plan(0)
    assert s.add(_chunk(7.0), DT, s.epoch)
    assert s.action_at(DT)[0] == 7.0
