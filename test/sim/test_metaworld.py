# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Meta-World MT10 behind the suite interface: experts succeed, images are upright."""

import warnings

import numpy as np
import pytest

from qvla_ros.cli.qvla import main as qvla
from qvla_ros.data.rollouts import episodes, read_episode, read_info
from qvla_ros.sim.metaworld_suite import INSTRUCTIONS, MetaWorldEnv

pytestmark = pytest.mark.filterwarnings('ignore')


@pytest.mark.slow
def test_experts_succeed_through_the_wrapper():
    env = MetaWorldEnv(tasks=('reach-v3', 'push-v3', 'drawer-open-v3'))
    try:
        for task in env.tasks:
            obs, text = env.reset(1, task)
            assert text == INSTRUCTIONS[task]
            assert obs['proprio'].shape == (7,) and list(obs['images']) == ['agentview', 'wrist']
            assert all(i.shape == (128, 128, 3) and i.std() > 5 for i in obs['images'].values())
            goal = obs['proprio'][4:].copy()  # hand xyz, gripper, then the goal's xyz
            np.testing.assert_array_equal(goal, env._obs[36:39].astype(np.float32))
            expert, done = env.expert(), False
            while not done:
                obs, success, done = env.step(expert.act())
                np.testing.assert_array_equal(obs['proprio'][4:], goal)
            assert success, task
        with pytest.raises(ValueError, match='7 finite numbers'):
            env.step(np.zeros(4))
    finally:
        env.close()


def test_reach_counts_success_at_the_fingers_not_at_the_hand_point_of_the_state():
    # The state's first three values are the hand body; reach-v3 succeeds when the fingers'
    # centre (tcp_center), 4-5 cm lower, is within 5 cm of the goal, so the hand must stop
    # within about 2 cm of the goal's xy at the goal's height or above it.
    env = MetaWorldEnv(tasks=('reach-v3',), render=False)
    try:
        obs, _ = env.reset(100001, 'reach-v3')
        world = env._env('reach-v3').unwrapped
        np.testing.assert_allclose(obs['proprio'][:3], world.get_endeff_pos(), atol=1e-6)
        offset = world.tcp_center - world.get_endeff_pos()
        assert 0.04 < -offset[2] < 0.05 and np.linalg.norm(offset[:2]) < 0.01
        goal = obs['proprio'][4:7].astype(np.float64)
        for dz, expected in ((-0.02, False), (0.02, True)):  # fingers 6.5 cm, 2.5 cm away
            env.reset(100001, 'reach-v3')
            world.data.mocap_pos[0] = goal + np.array([0.0, 0.0, dz])
            for _ in range(40):  # the hand follows the mocap body, sagging a few mm
                obs, success, _ = env.step(np.zeros(7))
            assert np.linalg.norm(obs['proprio'][:3] - goal - np.array([0, 0, dz])) < 0.01
            assert success == expected, dz
    finally:
        env.close()


def test_each_task_draws_its_own_scene_after_another_task_drew():
    # Every task's environment renders in its own GL context; one drawn in another's context
    # comes out as garbage geometry, the same state giving another image.
    env = MetaWorldEnv(tasks=('reach-v3', 'drawer-close-v3'))
    other = MetaWorldEnv(tasks=('window-open-v3',))  # a scene unlike reach's (push shares it)
    try:
        first, _ = env.reset(100047, 'reach-v3')
        before = {camera: image.copy() for camera, image in first['images'].items()}
        env.reset(100048, 'drawer-close-v3')
        env.step(np.zeros(7))
        other.reset(100049)
        again, _ = env.reset(100047, 'reach-v3')
        for camera, image in before.items():
            np.testing.assert_array_equal(again['images'][camera], image, err_msg=camera)
    finally:
        env.close()
        other.close()


def test_unknown_task():
    with pytest.raises(ValueError, match='unknown Meta-World tasks'):
        MetaWorldEnv(tasks=('fly-v3',))
    with pytest.raises(ValueError, match='at least one MT10 task'):
        MetaWorldEnv(tasks=())


@pytest.mark.slow
def test_collect_draws_episodes_from_the_given_tasks(tmp_path, capsys):
    # Seeds 0-3 draw window-open, drawer-open and window-open twice from all ten tasks; from
    # reach and push alone every episode is one of those two, in both worker processes.
    tasks = ('reach-v3', 'push-v3')
    assert qvla(['sim', 'collect', '--suite', 'metaworld', '--episodes', '4', '--seed', '0',
                 '--tasks', ','.join(tasks), '--workers', '2', '--out', str(tmp_path / 'mw')]) == 0
    texts = [e['instruction'] for e in episodes(tmp_path / 'mw')]
    assert len(texts) == 4 and set(texts) <= {INSTRUCTIONS[t] for t in tasks}
    assert qvla(['sim', 'collect', '--suite', 'metaworld', '--episodes', '1', '--tasks', 'reach',
                 '--out', str(tmp_path / 'bad')]) == 2
    assert "unknown Meta-World tasks ['reach']" in capsys.readouterr().err
    assert qvla(['sim', 'collect', '--episodes', '1', '--tasks', 'reach-v3',
                 '--out', str(tmp_path / 'bad')]) == 2
    assert 'tabletop suite draws its task from the seed' in capsys.readouterr().err
    assert not (tmp_path / 'bad').exists()


@pytest.mark.slow
def test_collect_metaworld(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert qvla(['sim', 'collect', '--suite', 'metaworld', '--episodes', '1', '--seed', '0',
                     '--out', str(tmp_path / 'mw')]) == 0
    info = read_info(tmp_path / 'mw')
    assert info.cameras == ('agentview', 'wrist') and info.control_hz == 80.0
    entry = episodes(tmp_path / 'mw')[0]
    assert entry['success'] and entry['instruction'] in INSTRUCTIONS.values()
    assert read_episode(tmp_path / 'mw', entry)['image.wrist'].shape[1:] == (128, 128, 3)


def test_an_episode_is_a_function_of_its_seed():
    first = MetaWorldEnv(render=False)
    other = MetaWorldEnv(render=False)
    try:
        obs, _ = first.reset(90000)
        other.reset(90002)  # another history in another environment
        again, _ = other.reset(90000)
        assert first.task == other.task
        np.testing.assert_array_equal(first._obs, other._obs)
        np.testing.assert_array_equal(obs['proprio'], again['proprio'])
        goals = set()
        for seed in range(90000, 90040):
            first.reset(seed)
            if first.task == 'reach-v3':
                goals.add(tuple(first._obs[-3:]))
        assert len(goals) > 1  # the seeds still draw different layouts
    finally:
        first.close()
        other.close()
