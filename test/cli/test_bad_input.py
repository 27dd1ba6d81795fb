# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Bad files and paths end every qvla command with one line naming them, never a traceback."""

import json
import sys

import pytest
from safetensors.torch import save_file
import torch

from qvla_ros.cli.qvla import main as qvla


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _sensitivity(path, scores, bits=(2, 4), in_features=None):
    meta = {'format': 'qvla-sensitivity', 'version': 1, 'bits': list(bits),
            'method': 'proxy', 'n_samples': 4, 'extra': {},
            'in_features': in_features if in_features is not None else
            {k: 16 for k in scores}}
    save_file(scores, str(path), metadata={'qvla': json.dumps(meta)})
    return path


BAD_SENSITIVITY = {
    'zero bytes': (lambda p: p.write_bytes(b''), 'is not a readable safetensors file'),
    'garbage': (lambda p: p.write_bytes(b'not a safetensors file at all' * 8),
                'is not a readable safetensors file'),
    'a layer with 0 rows': (lambda p: _sensitivity(p, {'a': torch.zeros(2, 0)}),
                            'out_features >= 1'),
    'no tensors': (lambda p: _sensitivity(p, {}), 'no layers'),
    'in_features 0': (lambda p: _sensitivity(p, {'a': torch.ones(2, 3)}, in_features={'a': 0}),
                      'in_features of a must be a positive integer, got 0'),
    'in_features not an integer': (
        lambda p: _sensitivity(p, {'a': torch.ones(2, 3)}, in_features={'a': 7.5}),
        'must be a positive integer, got 7.5'),
    'duplicate bits': (lambda p: _sensitivity(p, {'a': torch.ones(3, 3)}, bits=(2, 4, 4)),
                       'repeat an entry'),
    'unsupported bits': (lambda p: _sensitivity(p, {'a': torch.ones(2, 3)}, bits=(2, 5)),
                         'unsupported bit-width 5'),
    'no qvla metadata': (lambda p: save_file({'a': torch.ones(2, 3)}, str(p)),
                         'no qvla metadata'),
}


@pytest.mark.parametrize('case', sorted(BAD_SENSITIVITY))
def test_allocate_rejects_a_bad_sensitivity_file(tmp_path, capsys, case):
    path = tmp_path / 's.safetensors'
    make, message = BAD_SENSITIVITY[case]
    make(path)
    assert qvla(['allocate', '--sensitivity', str(path), '--target-bits', '4', '--out',
                 str(tmp_path / 'plan')]) == 2
    _one_line(capsys, 'qvla allocate: error:', str(path), message)
    assert not (tmp_path / 'plan').exists()


def test_an_unwritable_output_names_the_path(tmp_path, capsys):
    sens = _sensitivity(tmp_path / 's.safetensors', {'a': torch.rand(4, 8)}, bits=(0, 2, 4, 8))
    blocker = tmp_path / 'file'
    blocker.write_text('a file where a folder is expected')
    assert qvla(['allocate', '--sensitivity', str(sens), '--target-bits', '4', '--out',
                 str(blocker / 'plan')]) == 2
    _one_line(capsys, 'qvla allocate: error:', str(blocker))


def test_an_unexpected_exception_is_one_line_too(monkeypatch, capsys):
    import qvla_ros.cli.qvla as cli

    def broken(args):
        return {}['missing key']
    monkeypatch.setattr(cli, 'cmd_version', broken)
    assert qvla(['version']) == 2
    _one_line(capsys, "qvla version: error: KeyError: 'missing key'")


def test_quantize_never_destroys_its_source_nor_an_existing_output(tmp_path, capsys):
    from qvla_ros.models.checkpoint import save_policy
    from qvla_ros.models.toy import build_toy_policy
    model = tmp_path / 'fp'
    save_policy(build_toy_policy(0), model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    for out in (model, tmp_path / 'x' / '..' / 'fp', tmp_path):
        assert qvla(['quantize', '--model', str(model), '--method', 'rtn', '--bits', '4',
                     '--out', str(out), '--overwrite']) == 2
        _one_line(capsys, 'would overwrite the input')
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    out = tmp_path / 'q'
    args = ['quantize', '--model', str(model), '--method', 'rtn', '--bits', '4', '--out',
            str(out)]
    assert qvla(args) == 0
    capsys.readouterr()
    stamp = (out / 'model.safetensors').stat().st_mtime_ns
    assert qvla(args) == 2
    _one_line(capsys, f'{out} exists', '--overwrite')
    assert (out / 'model.safetensors').stat().st_mtime_ns == stamp
    assert qvla(args + ['--overwrite']) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fp', 'q']  # no temp or .old left


def test_quantize_recovers_a_swap_a_kill_interrupted(tmp_path, capsys):
    import os
    from qvla_ros.storage.atomic import sibling
    args = ['quantize', '--model', 'toy', '--method', 'rtn', '--bits', '4', '--out']
    out = tmp_path / 'q'
    assert qvla(args + [str(out)]) == 0
    os.replace(out, sibling(out, 'old'))  # killed between the two renames of an overwrite
    assert qvla(args + [str(out), '--overwrite']) == 0  # once failed on the leftover .old
    assert sorted(p.name for p in tmp_path.iterdir()) == ['q']
    os.replace(out, sibling(out, 'old'))
    from qvla_ros.models.checkpoint import load_policy
    assert load_policy(str(out)) is not None  # a loader rolls the half-done swap back
    assert sorted(p.name for p in tmp_path.iterdir()) == ['q']


@pytest.mark.parametrize('command', ['sensitivity', 'train'])
def test_a_truncated_episode_file_is_one_line(tmp_path, capsys, command):
    import numpy as np
    from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
    data = tmp_path / 'data'
    with RolloutWriter(data, DatasetInfo(7, 4, 10.0, ('front',))) as writer:
        for e in range(3):
            writer.add_episode({'front': np.zeros((5, 32, 32, 3), np.uint8)},
                               np.zeros((5, 4), np.float32), np.zeros((5, 7), np.float32),
                               np.arange(5), f'task {e}', True, 'sim', 'expert')
    broken = data / 'episodes' / '000001.safetensors'
    broken.write_bytes(broken.read_bytes()[:-64])
    args = {'sensitivity': ['sensitivity', '--model', 'toy', '--dataset', str(data),
                            '--method', 'proxy', '--out', str(tmp_path / 's')],
            'train': ['train', '--dataset', str(data), '--config', 'tiny', '--steps', '2',
                      '--out', str(tmp_path / 'm')]}[command]
    assert qvla(args) == 2
    _one_line(capsys, f'qvla {command}: error: {broken} is not a readable safetensors file')


def test_ray_missing_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'ray', None)  # as if Ray were not installed
    assert qvla(['sensitivity', '--model', 'toy', '--synthetic', '2', '--method', 'exact',
                 '--ray', 'local', '--out', str(tmp_path / 's')]) == 2
    _one_line(capsys, '--ray needs Ray', "pip install 'qvla_ros[distributed]'")
