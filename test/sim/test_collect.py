# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Parallel collection writes the dataset one process writes, appended in seed order."""

import numpy as np
import pytest

from qvla_ros.cli.qvla import main as qvla
from qvla_ros.data.rollouts import (append_datasets, DatasetInfo, episodes, read_episode,
                                    RolloutWriter)
from qvla_ros.sim.collect import collect


def _contents(root):
    out = []
    for entry in episodes(root):
        data = read_episode(root, entry)
        out.append((entry, data))
    return out


def _assert_same(a, b):
    assert len(a) == len(b)
    for (ea, da), (eb, db) in zip(a, b):
        assert ea == eb and sorted(da) == sorted(db)
        for key in da:
            np.testing.assert_array_equal(da[key], db[key])


def test_parallel_collection_equals_sequential(tmp_path):
    one, two = tmp_path / 'one', tmp_path / 'two'
    collect('tabletop', 1, one, seed=900)  # both start from a non-empty dataset
    collect('tabletop', 1, two, seed=900)
    a = collect('tabletop', 5, one, seed=7, action_noise=0.01, keep=lambda s: s)
    b = collect('tabletop', 5, two, seed=7, action_noise=0.01, keep=lambda s: s, workers=2)
    assert a == b and a['episodes'] == 5 and 1 + a['written'] == len(episodes(two))
    _assert_same(_contents(one), _contents(two))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['one', 'two']  # parts removed


def test_collect_cli_workers_and_bad_input(tmp_path, capsys):
    out = tmp_path / 'd'
    assert qvla(['sim', 'collect', '--episodes', '3', '--seed', '50', '--workers', '3',
                 '--out', str(out)]) == 0
    assert len(episodes(out)) == 3 and 'wrote 3 episodes' in capsys.readouterr().out
    assert qvla(['sim', 'collect', '--episodes', '2', '--workers', '0', '--out',
                 str(tmp_path / 'e')]) == 2
    assert 'workers must be >= 1' in capsys.readouterr().err
    other = tmp_path / 'other'
    RolloutWriter(other, DatasetInfo(3, 0, 10.0, ('wrist',)))
    with pytest.raises(ValueError, match='holds a dataset with'):
        append_datasets([other], out)


def test_expert_labels_record_the_expert_on_the_policys_states(tmp_path):
    kw = dict(seed=31, policy='toy', execute_steps=4)
    collect('tabletop', 2, tmp_path / 'fp', **kw)
    collect('tabletop', 2, tmp_path / 'dagger', expert_labels=True, **kw)
    collect('tabletop', 2, tmp_path / 'expert', seed=31)
    fp, dagger, expert = (_contents(tmp_path / n) for n in ('fp', 'dagger', 'expert'))
    for (ef, df), (ed, dd), (_, dx) in zip(fp, dagger, expert):
        assert ef['policy'] == 'fp' and ed['policy'] == 'expert'
        np.testing.assert_array_equal(df['proprio'], dd['proprio'])  # the policy drove both
        assert not np.allclose(df['action'], dd['action'])
        np.testing.assert_array_equal(dd['action'][0], dx['action'][0])  # same first state
    with pytest.raises(ValueError, match='give the policy too'):
        collect('tabletop', 1, tmp_path / 'x', expert_labels=True)
    assert qvla(['sim', 'collect', '--episodes', '1', '--policy', 'toy', '--expert-labels',
                 '--out', str(tmp_path / 'cli')]) == 0
    assert episodes(tmp_path / 'cli')[0]['policy'] == 'expert'


def test_merge_cli_concatenates_datasets_into_a_new_folder(tmp_path, capsys):
    collect('tabletop', 2, tmp_path / 'a', seed=40)
    collect('tabletop', 1, tmp_path / 'b', seed=60)
    out = tmp_path / 'ab'
    assert qvla(['sim', 'merge', str(tmp_path / 'a'), str(tmp_path / 'b'), '--out',
                 str(out)]) == 0
    assert 'wrote 3 episodes' in capsys.readouterr().out
    merged, parts = _contents(out), _contents(tmp_path / 'a') + _contents(tmp_path / 'b')
    unfiled = [[({k: v for k, v in e.items() if k != 'file'}, d) for e, d in c]
               for c in (merged, parts)]  # episode files are renumbered in the new folder
    _assert_same(*unfiled)
    assert qvla(['sim', 'merge', str(tmp_path / 'a'), '--out', str(out)]) == 2  # no appending
    assert 'exists; expected a new path' in capsys.readouterr().err
    assert len(episodes(out)) == 3
    other = tmp_path / 'other'
    RolloutWriter(other, DatasetInfo(3, 0, 10.0, ('wrist',)))
    assert qvla(['sim', 'merge', str(tmp_path / 'a'), str(other), '--out',
                 str(tmp_path / 'c')]) == 2
    assert 'holds a dataset with' in capsys.readouterr().err
    assert not (tmp_path / 'c').exists()


def _collect_cmd(out, episodes=10, workers=2):
    import sys
    return [sys.executable, '-m', 'qvla_ros.cli.qvla', 'sim', 'collect', '--episodes',
            str(episodes), '--seed', '20', '--workers', str(workers), '--out', str(out)]


def _wait_for(predicate, seconds):
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_killed_parallel_collection_keeps_its_episodes_and_resumes(tmp_path, capsys):
    import os
    import signal
    import subprocess
    out = tmp_path / 'd'
    proc = subprocess.Popen(_collect_cmd(out), start_new_session=True)
    try:
        assert _wait_for(lambda: (out / 'dataset.json').is_file() and len(episodes(out)) >= 3,
                         120), 'no episode landed while the collection ran'
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    kept = [e['seed'] for e in episodes(out)]
    assert 3 <= len(kept) < 10 and kept == sorted(set(kept))
    assert qvla(_collect_cmd(out)[3:]) == 0
    import re
    resumed = re.search(r'(\d+) already present', capsys.readouterr().out)
    assert resumed and int(resumed.group(1)) >= len(kept)  # + those finished but not filed
    seeds = [e['seed'] for e in episodes(out)]
    assert sorted(seeds) == list(range(20, 30)), 'episodes lost or duplicated'
    assert not (out / '.incoming').exists()
    sequential = tmp_path / 'seq'
    collect('tabletop', 10, sequential, seed=20)
    by_seed = {e['seed']: read_episode(sequential, e) for e in episodes(sequential)}
    for entry in episodes(out):
        np.testing.assert_array_equal(read_episode(out, entry)['action'],
                                      by_seed[entry['seed']]['action'])


def test_a_second_collection_into_the_same_dataset_is_refused(tmp_path):
    import subprocess
    out = tmp_path / 'd'
    first = subprocess.Popen(_collect_cmd(out, episodes=2000, workers=1))
    try:
        assert _wait_for(lambda: (out / 'dataset.json').is_file(), 60)
        second = subprocess.run(_collect_cmd(out, episodes=6, workers=1),
                                capture_output=True, text=True)
        assert first.poll() is None, 'the first collection ended before the second started'
        assert second.returncode == 2
        assert 'is held by process' in second.stderr and 'Traceback' not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()
    seeds = [e['seed'] for e in episodes(out)]
    assert seeds == list(range(20, 20 + len(seeds)))  # readable, in order, none twice
