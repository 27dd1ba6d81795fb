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
    w.close()
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
    w2.close()
    with pytest.raises(ValueError, match='holds a dataset with'):
        RolloutWriter(tmp_path, DatasetInfo(6, 3, 10.0, ('front',)))


@pytest.mark.parametrize('change,match', [
    (lambda e: ({'back': e[0]['front']},) + e[1:], 'cameras'),
    (lambda e: (e[0], e[1][:, :2]) + e[2:], 'proprio must be'),
    (lambda e: e[:2] + (e[2][:3],) + e[3:], r'action must be \(4, 7\)'),
    (lambda e: e[:3] + (e[3][::-1].copy(),), 'non-decreasing'),
    (lambda e: ({'front': e[0]['front'].astype(np.float32)},) + e[1:], 'uint8'),
    (lambda e: e[:2] + (np.where(np.arange(7) == 2, np.nan, e[2]),) + e[3:], 'finite'),
    (lambda e: (e[0], np.full_like(e[1], np.inf)) + e[2:], 'finite'),
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
    with pytest.raises(ValueError, match='dataset.json does not exist'):
        read_info(tmp_path / 'none')
    (tmp_path / 'dataset.json').write_text('{"format": "qvla-rol')
    with pytest.raises(ValueError, match='dataset.json is not valid JSON'):
        read_info(tmp_path)


def test_a_second_writer_is_refused_until_the_first_closes(tmp_path):
    import subprocess
    import sys
    first = RolloutWriter(tmp_path, INFO)
    with pytest.raises(ValueError, match=r'is held by process \d+ \(writing the dataset'):
        RolloutWriter(tmp_path, INFO)
    other = subprocess.run(
        [sys.executable, '-c', 'import sys; from qvla_ros.data.rollouts import DatasetInfo, '
         'RolloutWriter; RolloutWriter(sys.argv[1], DatasetInfo(7, 3, 10.0, ("front",)))',
         str(tmp_path)], capture_output=True, text=True)
    assert other.returncode != 0 and 'is held by process' in other.stderr
    first.add_episode(*_episode(), 'a', True, 'sim', 'expert')
    first.close()
    with RolloutWriter(tmp_path, INFO) as second:
        second.add_episode(*_episode(seed=2), 'b', True, 'sim', 'expert', seed=7)
        assert second.seeds() == {7}
    assert [e['instruction'] for e in episodes(tmp_path)] == ['a', 'b']


def test_a_truncated_episode_file_is_named(tmp_path):
    with RolloutWriter(tmp_path, INFO) as w:
        w.add_episode(*_episode(), 'a', True, 'sim', 'expert')
    path = tmp_path / 'episodes' / '000000.safetensors'
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match='000000.safetensors is not a readable safetensors '
                                         'file.*truncated'):
        list(iter_steps(tmp_path))


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
