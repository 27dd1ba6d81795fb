# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The evaluation harness: Wilson intervals, episodes, and the CLI."""

import json
import time

import numpy as np
import pytest

from qvla_ros.cli.qvla import main as qvla
from qvla_ros.core.types import ActionChunk
from qvla_ros.runtime.chunking import ScheduleSpec
from qvla_ros.sim.collect import collect, PolicyActor
from qvla_ros.sim.evaluate import _episode, _episodes, by_task, EvalConfig, evaluate, wilson
from qvla_ros.sim.suites import make_env
from qvla_ros.sim.tabletop import Expert
from qvla_ros.sim.tabletop import TabletopEnv


def test_wilson_interval():
    low, high = wilson(95, 100)
    assert low == pytest.approx(0.8882, abs=1e-3) and high == pytest.approx(0.9785, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


class _ExpertPolicy:
    """The scripted expert behind the policy interface, one-step chunks."""

    def __init__(self, env):
        self.env, self.expert, self.task = env, None, None

    def predict(self, obs):
        if self.expert is None or self.task is not self.env.task:
            self.expert, self.task = Expert(self.env), self.env.task
        return ActionChunk(self.expert.act()[None], 0.1)


def test_success_by_task_counts_every_episode():
    eps = [{'task': 'stack', 'success': True}, {'task': 'push', 'success': False},
           {'task': 'stack', 'success': False}]
    assert by_task(eps) == {'push': [0, 1], 'stack': [1, 2]}


def test_episode_runs_the_policy_and_measures_deviation():
    env = TabletopEnv()
    try:
        policy = _ExpertPolicy(env)
        result = _episode(env, policy, policy, seed=3, spec=ScheduleSpec('replan', 1))
        assert result['success'] and result['steps'] > 5
        assert result['task'] in ('push', 'stack')
        assert result['deviation'] and max(result['deviation']) < 1e-6
    finally:
        env.close()


class _CountingPolicy:
    """Chunks of 8 numbered actions; counts its forward passes."""

    def __init__(self):
        self.calls = 0

    def predict(self, obs):
        self.calls += 1
        return ActionChunk(np.arange(8, dtype=np.float32)[:, None].repeat(7, 1), 0.1)


def test_policy_actor_replans_after_execute_steps(tmp_path):
    env = TabletopEnv(render=False)
    try:
        obs, text = env.reset(0)
        for k, calls in ((3, 4), (8, 2)):
            policy = _CountingPolicy()
            actor = PolicyActor(policy, env, text, k)
            firsts = [actor.act(obs)[0] for _ in range(10)]
            assert policy.calls == calls
            assert firsts[:k + 1] == [*range(k), 0.0]  # k actions, then a fresh chunk
    finally:
        env.close()
    with pytest.raises(ValueError, match='execute_steps must be >= 1'):
        EvalConfig('toy', execute_steps=0)
    with pytest.raises(ValueError, match='execute_steps must be >= 1'):
        collect('tabletop', 1, tmp_path / 'd', policy='toy', execute_steps=0)


class _SlowFirstPolicy(_CountingPolicy):
    """A policy whose first call is slow, like one that builds its kernels on first use."""

    def predict(self, obs):
        if self.calls == 0:
            time.sleep(0.5)
        return super().predict(obs)


def test_latency_leaves_out_the_first_call_of_a_process():
    env = make_env('tabletop', max_steps=3)
    try:
        policy, reference = _SlowFirstPolicy(), _CountingPolicy()
        episodes = _episodes(env, policy, reference, [0, 1], ScheduleSpec('replan', 8))
    finally:
        env.close()
    assert [e['steps'] for e in episodes] == [3, 3]
    assert policy.calls == reference.calls == 3  # one warm-up call, one chunk per episode
    assert max(e['latency_ms'] for e in episodes) < 250.0


def test_cli_eval_toy_policy(tmp_path, capsys):
    out = tmp_path / 'eval.json'
    assert qvla(['eval', '--checkpoint', 'toy:0', '--reference', 'toy:1', '--episodes', '2',
                 '--seeds', '100000:100002', '--workers', '1', '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['episodes'] == 2 and result['successes'] == 0  # an untrained toy fails
    assert result['mean_deviation'] > 0 and result['packed_bytes'] is None
    assert sum(n for _, n in result['by_task'].values()) == 2
    assert 'Wilson 95 %' in capsys.readouterr().out
    assert qvla(['eval', '--checkpoint', 'toy', '--seeds', '5:5']) == 2
    assert np.isfinite(result['policy_latency_ms'])


def test_max_steps_sets_the_episode_horizon():
    res = evaluate(EvalConfig('toy:0', seeds=(100000, 100001), max_steps=11))
    assert [e['steps'] for e in res['per_episode']] == [11, 11]  # an untrained toy fails
    assert res['config']['max_steps'] == 11
    assert make_env('tabletop', render=False).max_steps == 80  # the suite default
    with pytest.raises(ValueError, match='max_steps must be >= 1'):
        EvalConfig('toy', max_steps=0)
    with pytest.raises(ValueError, match='max_steps must be >= 1'):
        make_env('tabletop', max_steps=-1)
