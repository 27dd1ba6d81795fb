# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The qvla CLI end to end: sensitivity -> allocate -> quantize -> load, and its errors."""

import json

import numpy as np
import pytest

from qvla_ros.cli.qvla import main
from qvla_ros.core.types import Observation
from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
from qvla_ros.models.checkpoint import load_policy
from qvla_ros.quant.activation import CLIP_GRID
from qvla_ros.quant.artifacts import QuantPlan


def _dataset(root, episodes=2, steps=6, cameras=('front',), size=(48, 64)):
    writer = RolloutWriter(root, DatasetInfo(7, 8, 10.0, cameras))
    rng = np.random.default_rng(0)
    for e in range(episodes):
        writer.add_episode({c: rng.integers(0, 256, (steps, *size, 3), dtype=np.uint8)
                            for c in cameras},
                           rng.standard_normal((steps, 8)).astype(np.float32),
                           rng.standard_normal((steps, 7)).astype(np.float32),
                           np.arange(steps, dtype=np.int64) * 100_000_000,
                           f'push the red block {e}', True, 'sim', 'expert')
    return root


def test_pipeline_from_dataset(tmp_path, capsys):
    data = _dataset(tmp_path / 'data')
    sens, plan, ckpt = tmp_path / 's.safetensors', tmp_path / 'plan', tmp_path / 'ckpt'
    assert main(['sensitivity', '--model', 'toy:1', '--dataset', str(data), '--stride', '2',
                 '--method', 'exact', '--out', str(sens)]) == 0
    assert main(['allocate', '--sensitivity', str(sens), '--target-bits', '3.0',
                 '--out', str(plan)]) == 0
    loaded = QuantPlan.load(plan)
    assert loaded.achieved_bits() <= 3.0
    assert main(['quantize', '--model', 'toy:1', '--plan', str(plan), '--out', str(ckpt)]) == 0
    assert main(['inspect', str(plan)]) == 0
    out = capsys.readouterr().out
    assert 'histogram:' in out and 'vision.0' in out
    config = json.loads((ckpt / 'config.json').read_text())
    assert config['quantization_config']['plan_id'] == loaded.plan_id
    assert main(['inspect', str(ckpt), '--plots', str(tmp_path / 'plots')]) == 0
    out = capsys.readouterr().out
    assert f'plan {loaded.plan_id}' in out and list((tmp_path / 'plots').glob('*.png'))
    q_layers = {k: m for k, m in load_policy(str(ckpt)).named_modules() if k in loaded.bits}
    packed = sum(m.layout.packed_bytes() - (0 if m.layout.bias is None else
                                            m.layout.bias.numel() * m.layout.bias.element_size())
                 for m in q_layers.values())
    assert f'packed bytes {packed} of' in out  # the real bytes of the loaded layers
    q, fp = load_policy(str(ckpt)), load_policy('toy:1')
    obs = Observation({'front': np.zeros((48, 64, 3), np.uint8)}, 'push the red block')
    a, b = q.predict(obs).actions, fp.predict(obs).actions
    assert np.abs(a - b).max() < 0.2 * np.abs(b).max() + 1e-6  # close, not identical
    assert not np.array_equal(a, b)
    assert np.array_equal(load_policy(str(ckpt)).predict(obs).actions, a)  # reload is exact


def test_errors_name_what_was_expected(tmp_path, capsys):
    assert main(['sensitivity', '--model', 'toy', '--out', str(tmp_path / 's')]) == 2
    assert '--dataset DIR' in capsys.readouterr().err
    assert main(['sensitivity', '--model', 'nowhere', '--synthetic', '2',
                 '--out', str(tmp_path / 's')]) == 2
    assert 'config.json' in capsys.readouterr().err
    assert main(['allocate', '--sensitivity', str(tmp_path / 'missing'), '--target-bits', '4',
                 '--out', str(tmp_path / 'p')]) == 2
    assert 'qvla-sensitivity' in capsys.readouterr().err
    sens = tmp_path / 's.safetensors'
    assert main(['sensitivity', '--model', 'toy', '--synthetic', '4', '--method', 'proxy',
                 '--out', str(sens)]) == 0
    assert main(['allocate', '--sensitivity', str(sens), '--target-bits', '4',
                 '--out', str(tmp_path / 'p')]) == 0
    plan = QuantPlan.load(tmp_path / 'p')
    plan.bits['vision.0'] = plan.bits['vision.0'][:10]
    plan.save(tmp_path / 'bad')
    assert main(['quantize', '--model', 'toy', '--plan', str(tmp_path / 'bad'),
                 '--out', str(tmp_path / 'c')]) == 2
    assert 'does not match the model' in capsys.readouterr().err
    assert main(['quantize', '--model', 'toy', '--plan', str(tmp_path / 'p'), '--act-bits', '4',
                 '--out', str(tmp_path / 'c')]) == 2
    assert '--act-bits, --rotation and --act-clip search go with --method M' in \
        capsys.readouterr().err
    assert not (tmp_path / 'c').exists()


def test_toy_spec_parsing():
    with pytest.raises(ValueError, match='integer seed'):
        load_policy('toy:x')


def test_gptq_rounding_travels_from_sensitivity_to_checkpoint(tmp_path, capsys):
    data = _dataset(tmp_path / 'data')
    sens, plan, ckpt = tmp_path / 's.safetensors', tmp_path / 'plan', tmp_path / 'ckpt'
    assert main(['sensitivity', '--model', 'toy:1', '--dataset', str(data), '--stride', '2',
                 '--method', 'proxy', '--rounding', 'gptq', '--out', str(sens)]) == 0
    assert main(['allocate', '--sensitivity', str(sens), '--target-bits', '3.0',
                 '--out', str(plan)]) == 0
    assert QuantPlan.load(plan).extra['rounding'] == 'gptq'
    assert main(['quantize', '--model', 'toy:1', '--plan', str(plan), '--out', str(ckpt)]) == 2
    assert 'give --dataset DIR' in capsys.readouterr().err and not ckpt.exists()
    assert main(['quantize', '--model', 'toy:1', '--plan', str(plan), '--dataset', str(data),
                 '--stride', '2', '--out', str(ckpt)]) == 0
    obs = Observation({'front': np.zeros((48, 64, 3), np.uint8)}, 'push the red block')
    gptq = load_policy(str(ckpt)).predict(obs).actions
    rtn_plan = QuantPlan.load(plan)
    del rtn_plan.extra['rounding']
    rtn_plan.save(tmp_path / 'rtn-plan')
    assert main(['quantize', '--model', 'toy:1', '--plan', str(tmp_path / 'rtn-plan'),
                 '--out', str(tmp_path / 'rtn')]) == 0
    assert not np.array_equal(gptq, load_policy(str(tmp_path / 'rtn')).predict(obs).actions)


def test_w4a4_with_a_rotation_from_the_command_line(tmp_path, capsys):
    data = _dataset(tmp_path / 'data')
    ckpt = tmp_path / 'w4a4'
    args = ['quantize', '--model', 'toy:1', '--method', 'qvla', '--bits', '4', '--act-bits',
            '4', '--rotation', 'hadamard', '--dataset', str(data), '--stride', '2']
    assert main(args + ['--act-clip', '1.5', '--out', str(ckpt)]) == 2
    assert 'clip_ratio must be in (0, 1]' in capsys.readouterr().err and not ckpt.exists()
    assert main(args + ['--act-clip', '0.9', '--out', str(ckpt)]) == 0
    qc = json.loads((ckpt / 'config.json').read_text())['quantization_config']
    assert qc['method'] == 'qvla-a4-clip0.9-hadamard' and qc['act_bits'] == 4
    assert qc['activation'] == {'bits': 4, 'clip_ratio': 0.9, 'rotation': 'hadamard',
                                'seed': 0}
    obs = Observation({'front': np.zeros((48, 64, 3), np.uint8)}, 'push the red block')
    a = load_policy(str(ckpt)).predict(obs).actions
    b = load_policy('toy:1').predict(obs).actions
    assert np.abs(a - b).max() < 0.2 * np.abs(b).max() + 1e-6
    assert main(['inspect', str(ckpt)]) == 0 and 'packed bytes' in capsys.readouterr().out


def test_w4a4_with_searched_clip_ratios_from_the_command_line(tmp_path, capsys):
    data = _dataset(tmp_path / 'data')
    ckpt = tmp_path / 'w4a4'
    args = ['quantize', '--model', 'toy:1', '--method', 'rtn', '--bits', '4', '--dataset',
            str(data), '--stride', '2', '--out', str(ckpt)]
    with pytest.raises(SystemExit):
        main(args + ['--act-bits', '4', '--act-clip', 'auto'])
    assert "expected a ratio in (0, 1] or 'search', got 'auto'" in capsys.readouterr().err
    assert main(args + ['--act-clip', 'search']) == 2  # no activation bits to search for
    assert 'clip search needs quantized activations' in capsys.readouterr().err
    assert main(args + ['--act-bits', '4', '--act-clip', 'search']) == 0
    qc = json.loads((ckpt / 'config.json').read_text())['quantization_config']
    assert qc['method'] == 'rtn-a4-clipsearch' and qc['activation']['clip_search']
    clips = {e['act_clip'] for e in qc['layers'].values()}
    assert clips <= set(CLIP_GRID) and len(clips) > 1, clips  # chosen per layer
    obs = Observation({'front': np.zeros((48, 64, 3), np.uint8)}, 'push the red block')
    a = load_policy(str(ckpt)).predict(obs).actions
    b = load_policy('toy:1').predict(obs).actions
    assert np.abs(a - b).max() < 0.2 * np.abs(b).max() + 1e-6


def test_a_warm_start_keeps_the_init_models_proprio_when_it_gains_cameras(tmp_path, capsys):
    root = _dataset(tmp_path / 'two', 3, 5, ('agentview', 'wrist'), (64, 64))
    common = ['train', '--dataset', str(root), '--config', 'tiny', '--steps', '2',
              '--batch-size', '2', '--fp32']
    assert main([*common, '--out', str(tmp_path / 'one'), '--proprio-dim', '6']) == 0
    # no --proprio-dim: the warm start reads 6 values, as its --init model does
    assert main([*common, '--out', str(tmp_path / 'both'), '--init', str(tmp_path / 'one'),
                 '--cameras', 'agentview,wrist']) == 0
    both = load_policy(str(tmp_path / 'both'))
    assert both.config.proprio_dim == 6 and both.config.cameras == ('agentview', 'wrist')
    assert main([*common, '--out', str(tmp_path / 'x'), '--init', str(tmp_path / 'one'),
                 '--proprio-dim', '4']) == 2  # a narrower proprio is refused in one line
    assert 'only proprio_dim may grow' in capsys.readouterr().err
