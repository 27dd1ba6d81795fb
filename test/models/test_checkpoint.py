# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Damaged or contradictory checkpoint folders: one CheckpointError naming the file."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from qvla_ros.cli.qvla import main as qvla
from qvla_ros.models.checkpoint import CheckpointError, load_policy, plan_id_of, save_policy
from qvla_ros.models.reference import build_reference, CONFIGS
from qvla_ros.quant.artifacts import QuantPlan


@pytest.fixture(scope='module')
def fp_folder(tmp_path_factory):
    """An FP qvla-ref tiny checkpoint, written by save_policy."""
    out = tmp_path_factory.mktemp('fp') / 'ckpt'
    save_policy(build_reference(CONFIGS['tiny'], seed=3), out)
    return out


@pytest.fixture(scope='module')
def packed_folder(tmp_path_factory):
    """A packed 4-bit toy checkpoint and its plan folder, made by the CLI."""
    root = tmp_path_factory.mktemp('q')
    assert qvla(['sensitivity', '--model', 'toy', '--synthetic', '4', '--method', 'proxy',
                 '--out', str(root / 's.safetensors')]) == 0
    assert qvla(['allocate', '--sensitivity', str(root / 's.safetensors'), '--target-bits',
                 '4', '--out', str(root / 'plan')]) == 0
    assert qvla(['quantize', '--model', 'toy', '--plan', str(root / 'plan'), '--out',
                 str(root / 'ckpt')]) == 0
    return root / 'ckpt', root / 'plan'


def _edit_json(name, change):
    def edit(folder):
        path = folder / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return edit


def _truncate(folder):
    path = folder / 'model.safetensors'
    path.write_bytes(path.read_bytes()[:-100])


def _stats(change):
    return _edit_json('norm_stats.json', lambda d: change(d['default']['action']))


def _set(key, i, value):
    def change(action):
        action[key][i] = value
    return change


def _drop_last(action):
    for key in ('q01', 'q99', 'mask'):
        action[key] = action[key][:-1]


FP_DAMAGE = {
    'truncated weights': (_truncate, r'model.safetensors is not a readable safetensors file'),
    'garbage header': (lambda f: (f / 'model.safetensors').write_bytes(b'\xff' * 64),
                       'model.safetensors is not a readable safetensors file'),
    'empty weights': (lambda f: (f / 'model.safetensors').write_bytes(b''),
                      'model.safetensors is not a readable safetensors file'),
    'missing weights': (lambda f: (f / 'model.safetensors').unlink(),
                        'model.safetensors does not exist'),
    'config not JSON': (lambda f: (f / 'config.json').write_text('{"format": "qv'),
                        'config.json is not valid JSON'),
    'config value of the wrong type': (
        _edit_json('config.json', lambda d: d['config'].update(hidden='64')),
        r"config.json: RefConfig field 'hidden' must be int, got '64'"),
    'unknown config field': (_edit_json('config.json', lambda d: d['config'].update(hiden=64)),
                             r"unknown RefConfig fields \['hiden'\]"),
    'inconsistent config': (_edit_json('config.json', lambda d: d['config'].update(heads=5)),
                            'config.json: invalid RefConfig'),
    'q01 above q99': (_stats(lambda a: (_set('q01', 0, 1.0)(a), _set('q99', 0, -1.0)(a))),
                      'norm_stats.json: normalization bounds need q01 <= q99 on every dimension; '
                      'dimension 0 has q01 1.0 > q99 -1.0'),
    'NaN bound': (_stats(_set('q99', 2, float('nan'))), 'bounds must be finite'),
    'infinite bound': (_stats(_set('q01', 1, float('-inf'))), 'bounds must be finite'),
    'wrong action dimension': (_stats(_drop_last),
                               'action statistics have 6 dimensions, the model predicts 7'),
    'weights of another size': (
        _edit_json('config.json', lambda d: d['config'].update(head_hidden=32)),
        'model.safetensors does not fit'),
}


@pytest.mark.parametrize('damage', sorted(FP_DAMAGE))
def test_a_damaged_fp_checkpoint_is_one_named_error(fp_folder, tmp_path, damage):
    folder = tmp_path / 'ckpt'
    shutil.copytree(fp_folder, folder)
    break_it, message = FP_DAMAGE[damage]
    break_it(folder)
    with pytest.raises(CheckpointError, match=message):
        load_policy(str(folder))


PACKED_DAMAGE = {
    'plan.json contradicts the weights': (
        _edit_json('plan.json', lambda d: d['layers']['vision.0']['histogram'].update(
            {'2': d['layers']['vision.0']['histogram']['2'] + 1})),
        'plan.json does not describe the packed weights'),
    'forged plan id': (
        _edit_json('config.json', lambda d: d['quantization_config'].update(
            plan_id='0123456789ab')),
        r"plan id '0123456789ab' is not the id of the packed weights"),
    'plan.json missing': (lambda f: (f / 'plan.json').unlink(), 'plan.json does not exist'),
    'unknown activation width': (
        _edit_json('config.json', lambda d: d['quantization_config'].update(
            activation={'bits': 3, 'clip_ratio': 1.0, 'rotation': None, 'seed': 0})),
        r'quantization_config.activation: activation bits must be one of \(4, 8, 16\)'),
    'unsupported width in plan.json': (
        _edit_json('plan.json', lambda d: d.update(candidates=[0, 2, 4, 5, 8, 16])),
        'unsupported bit-width 5'),
}


@pytest.mark.parametrize('damage', sorted(PACKED_DAMAGE))
def test_a_contradictory_packed_checkpoint_is_refused(packed_folder, tmp_path, damage):
    folder = tmp_path / 'ckpt'
    shutil.copytree(packed_folder[0], folder)
    break_it, message = PACKED_DAMAGE[damage]
    break_it(folder)
    with pytest.raises(CheckpointError, match=message):
        load_policy(str(folder))


def test_the_plan_id_comes_from_the_packed_weights(packed_folder):
    ckpt, plan = packed_folder
    assert plan_id_of(load_policy(str(ckpt))) == QuantPlan.load(plan).plan_id
    assert plan_id_of(load_policy('toy')) == ''


@pytest.mark.parametrize('damage', ['truncated weights', 'config value of the wrong type',
                                    'q01 above q99'])
def test_the_cli_prints_one_line_for_a_damaged_checkpoint(fp_folder, tmp_path, damage):
    folder = tmp_path / 'ckpt'
    shutil.copytree(fp_folder, folder)
    FP_DAMAGE[damage][0](folder)
    run = subprocess.run([sys.executable, '-m', 'qvla_ros.cli.qvla', 'quantize', '--model',
                          str(folder), '--method', 'rtn', '--bits', '4', '--out',
                          str(tmp_path / 'q')], capture_output=True, text=True)
    assert run.returncode == 2 and 'Traceback' not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('qvla quantize: error: ') \
        and str(folder) in lines[0], run.stderr


def test_a_good_checkpoint_still_loads_exactly(fp_folder):
    from qvla_ros.core.types import Observation
    obs = Observation({'c': np.zeros((64, 64, 3), np.uint8)}, 'push the red block',
                      np.zeros(4, np.float32))
    expected = build_reference(CONFIGS['tiny'], seed=3).predict(obs).actions
    np.testing.assert_array_equal(load_policy(str(fp_folder)).predict(obs).actions, expected)
