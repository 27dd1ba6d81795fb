# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Rollout dataset: round trip, validation and atomic writes."""

import json

import numpy as np
import pytest

from qvla_ros.data.rollouts import (DatasetInfo, episodes, iter_steps, read_episode,
                                    read_info, RolloutWriter, spread_steps)

INFO = DatasetInfo(7, 3, 10.0, ('front',))


def _episode(t=4, seed=0):
    rng = np.random.default_rng(seed)
    return ({'front': rng.integers(0, 256, (t, 8, 10, 3), dtype=np.uint8)},
            rng.standard_normal((t, 3)).astype(np.float32),
            rng.standard_normal((t, 7)).astype(np.float32), np.arange(t, dtype=np.int64))


def test_roundtrip_and_reopen(tmp_path):
    w = RolloutWriter(tmp_path, INFO)
    imgs, prop, act, st = _episode()
    w.add_episode(imgs, prop, act, st, 'push the red block', True, 'sim', 'expert')
    w2 = RolloutWriter(tmp_path, INFO)  # reopening appends
    w2.add_episode(*_episode(seed=1), 'pick', None, 'ros', 'fp')
    assert read_info(tmp_path) == INFO
    entries = episodes(tmp_path)
    assert [e['file'] for e in entries] == ['episodes/000000.safetensors',
                                            'episodes/000001.safetensors']
    data = read_episode(tmp_path, entries[0])
    np.testing.assert_array_equal(data['image.front'], imgs['front'])
    np.testing.assert_array_equal(data['action'], act)
    assert not list(tmp_path.rglob('*.tmp'))
    with pytest.raises(ValueError, match='holds a dataset with'):
        RolloutWriter(tmp_path, DatasetInfo(6, 3, 10.0, ('front',)))


@pytest.mark.parametrize('change,match', [
    (lambda e: ({'back': e[0]['front']},) + e[1:], 'cameras'),
    (lambda e: (e[0], e[1][:, :2]) + e[2:], 'proprio must be'),
    (lambda e: e[:2] + (e[2][:3],) + e[3:], r'action must be \(4, 7\)'),
    (lambda e: e[:3] + (e[3][::-1].copy(),), 'non-decreasing'),
    (lambda e: ({'front': e[0]['front'].astype(np.float32)},) + e[1:], 'uint8'),
])
def test_bad_episodes_are_rejected_and_index_untouched(tmp_path, change, match):
    w = RolloutWriter(tmp_path, INFO)
    with pytest.raises(ValueError, match=match):
        w.add_episode(*change(_episode()), 'x', None, 'sim', 'expert')
    assert json.loads((tmp_path / 'dataset.json').read_text())['episodes'] == []


def test_wrong_format(tmp_path):
    (tmp_path / 'dataset.json').write_text('{"format": "other", "version": 1}')
    with pytest.raises(ValueError, match="expected format 'qvla-rollouts'"):
        read_info(tmp_path)
    with pytest.raises(FileNotFoundError, match='dataset.json'):
        read_info(tmp_path / 'none')


def test_spread_steps_cover_the_whole_dataset(tmp_path):
    w = RolloutWriter(tmp_path, INFO)
    for e, t in enumerate((30, 6, 6, 6, 12)):  # a long first episode, as in real calibration
        w.add_episode(*_episode(t, seed=e), f'task {e}', True, 'sim', 'expert')
    picked = [(entry['instruction'], i) for entry, i, _ in spread_steps(tmp_path, 5, 2)]
    assert len(picked) == 5 and len(set(picked)) == 5
    assert {p[0] for p in picked} == {'task 0', 'task 1', 'task 3', 'task 4'}  # not the head
    head = [(entry['instruction'], i) for entry, i, _ in iter_steps(tmp_path, 2)][:5]
    assert {p[0] for p in head} == {'task 0'}  # what taking the first N steps would give
    assert picked == [(entry['instruction'], i) for entry, i, _ in spread_steps(tmp_path, 5, 2)]
    everything = [(entry['instruction'], i) for entry, i, _ in iter_steps(tmp_path, 2)]
    assert [(entry['instruction'], i) for entry, i, _ in spread_steps(tmp_path, 999, 2)] == \
        everything
    entry, i, data = next(spread_steps(tmp_path, 1, 1))
    assert data['proprio'].shape[0] == entry['num_steps'] and i < entry['num_steps']
    with pytest.raises(ValueError, match='count and stride must be >= 1'):
        next(spread_steps(tmp_path, 0, 1))
