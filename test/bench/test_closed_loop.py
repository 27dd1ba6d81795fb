# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Closed-loop bench bookkeeping: stale cached cells are tagged (kept) and their cells rerun."""

from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest  # noqa: E402

from bench.closed_loop import (cell_key, cells, check_same_schedule,  # noqa: E402
                               check_same_weights, fp_successes_on, markdown, percent_of_fp, plot,
                               refreshed_fp, retag_stale, SAMPLING, weights_digest)


def _row(method, **extra):
    return {'method': method, 'target_bits': 4.0, 'act_bits': None, 'tag': '', **extra}


def test_cells_made_under_another_prune_cap_are_tagged_once():
    old = retag_stale(_row('qvla', max_prune_fraction=0.5), 0.05)
    assert old['tag'] == 'prune<=0.5' and retag_stale(old, 0.05) == old  # idempotent
    assert cell_key('qvla', 4.0, None, old['tag']) != cell_key('qvla', 4.0, None)
    for row in (_row('rtn'), _row('gptq', calibration_sampling=SAMPLING),
                _row('qvla', max_prune_fraction=0.05, calibration_sampling=SAMPLING)):
        assert retag_stale(row, 0.05) == row  # uniform methods have no cap
    assert retag_stale(_row('layerwise', max_prune_fraction=0.05), 0.1)['tag'] == 'prune<=0.05'
    old_a8 = retag_stale(_row('smoothquant', act_bits=8, tag='w4a8'), 0.05)
    assert old_a8['tag'] == 'w4a8, calibrated on FP inputs' and retag_stale(old_a8, 0.05) == old_a8
    for row in (_row('rtn', act_bits=8, tag='w4a8'),  # reads no data: its cell is unchanged
                _row('qvla', act_bits=4, act_clip=0.9, max_prune_fraction=0.05)):
        assert retag_stale(row, 0.05) == row


def test_cells_of_another_checkpoint_are_refused(tmp_path):
    for name, data in (('a', b'weights a'), ('b', b'weights b')):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'model.safetensors').write_bytes(data)
    a, b = weights_digest(str(tmp_path / 'a')), weights_digest(str(tmp_path / 'b'))
    assert len(a) == 12 and a != b and weights_digest(str(tmp_path)) == ''
    check_same_weights({'checkpoint_sha256': a}, a, tmp_path / 'r.json')
    check_same_weights({}, a, tmp_path / 'r.json')  # files written before the digest
    with pytest.raises(SystemExit, match='--fresh'):
        check_same_weights({'checkpoint_sha256': a}, b, tmp_path / 'r.json')


def test_cells_of_another_chunk_schedule_are_refused(tmp_path):
    out = tmp_path / 'r.json'
    check_same_schedule({}, 8, out)  # a new file
    check_same_schedule({'execute_steps': 8}, 8, out)
    with pytest.raises(SystemExit, match='executed 4 actions per chunk; this run executes 8'):
        check_same_schedule({'execute_steps': 4}, 8, out)
    with pytest.raises(SystemExit, match='--fresh'):
        check_same_schedule({'execute_steps': 8}, 2, out)


def test_percent_of_fp_compares_on_the_cells_own_seeds():
    fp = {'method': 'fp', 'episodes': 100, 'successes': 40, 'success_rate': 0.4,
          'seed0': 1000, 'solved_seeds': [1000, 1003] + list(range(1030, 1068))}
    assert fp_successes_on(fp, 30) == 2 and fp_successes_on(fp, 100) == 40
    assert percent_of_fp({'episodes': 30, 'successes': 3}, fp) == pytest.approx(150.0)
    assert percent_of_fp({'episodes': 100, 'successes': 38}, fp) == pytest.approx(95.0)
    assert percent_of_fp({'episodes': 3, 'successes': 1}, fp) == pytest.approx(100.0)
    assert fp_successes_on(fp, 200) == pytest.approx(80.0)  # beyond FP's seeds: its rate
    assert percent_of_fp({'episodes': 2, 'successes': 0}, {**fp, 'solved_seeds': []}) == 0.0


def test_the_table_shows_fp_on_each_cells_seeds():
    fp = {'method': 'fp', 'target_bits': 16, 'act_bits': None, 'real_bits_per_param': 16.0,
          'episodes': 4, 'successes': 2, 'success_rate': 0.5, 'wilson95': [0.1, 0.9],
          'policy_latency_ms': 1.0, 'seed0': 0, 'solved_seeds': [0, 3]}
    row = {**fp, 'method': 'rtn', 'target_bits': 4.0, 'episodes': 2, 'successes': 1,
           'success_rate': 0.5, 'mean_deviation': 0.1, 'final_step_deviation': 0.2}
    del row['solved_seeds']
    lines = markdown([row], fp).splitlines()
    assert 'FP on these seeds' in lines[0] and lines[1].count('|') == lines[0].count('|')
    assert lines[3].startswith('| rtn | W4 | 16.00 | 1/2 | 10-90 % | 1/2 | 100 % |')
    assert lines[2].startswith('| fp | fp | 16.00 | 2/4 | 10-90 % | 2/4 | 100 % |')


def test_a_refreshed_fp_row_records_the_old_one_and_must_use_the_cells_seeds(tmp_path):
    old = {'method': 'fp', 'episodes': 100, 'successes': 91, 'success_rate': 0.91}
    new = {'method': 'fp', 'episodes': 100, 'successes': 90, 'seed0': 7, 'solved_seeds': [7],
           'device': 'cpu b', 'commit': 'abc'}
    meta = {'eval_seeds': [7, 107], 'device': 'cpu a'}
    row = refreshed_fp(old, new, meta, 7, tmp_path / 'r.json')
    assert row['successes'] == 90 and row['solved_seeds'] == [7]
    assert row['previous'] == {'episodes': 100, 'successes': 91, 'device': None, 'commit': None}
    assert refreshed_fp(None, new, {}, 7, tmp_path / 'r.json') == new  # a new file
    with pytest.raises(SystemExit, match='cells evaluated from seed 7.*Pass --seed0 7'):
        refreshed_fp(old, {**new, 'seed0': 8}, meta, 8, tmp_path / 'r.json')


def test_a_cell_calibrated_on_fewer_samples_says_so():
    fp = {'method': 'fp', 'target_bits': 16, 'act_bits': None, 'real_bits_per_param': 16.0,
          'episodes': 4, 'successes': 2, 'success_rate': 0.5, 'wilson95': [0.1, 0.9],
          'policy_latency_ms': 1.0, 'seed0': 0, 'solved_seeds': [0, 3]}
    rows = [{**fp, 'method': m, 'target_bits': 4.0, 'calibration_samples': s, 'tag': ''}
            for m, s in (('qvla', 16), ('gptq', 16), ('qvla-exact', 2))]
    table = markdown(rows, fp)
    assert '| qvla-exact (2 samples) | W4 |' in table and '| qvla | W4 |' in table


def test_input_quantized_cells_rotate_where_it_applies_and_run_once():
    from types import SimpleNamespace
    args = SimpleNamespace(budgets=[], methods=[], w4a8=True, activations=[4, 8],
                           act_methods=['rtn', 'smoothquant', 'gptq', 'qvla', 'qvla-gptq'],
                           act_episodes=100, episodes=30, samples=16, ablation=False,
                           a4_clip=0.9, rotations=['none', 'hadamard', 'quarot'])
    every = list(cells(args))
    got = [(m, a, tag, rot) for m, bits, a, n, _, tag, _, rot in every if n == 100]
    assert ('qvla', 4, 'hadamard', 'hadamard') in got and ('qvla', 4, '', None) in got
    assert ('gptq', 4, 'quarot', 'quarot') in got
    assert ('smoothquant', 4, '', None) in got
    assert not any(m == 'smoothquant' and rot for m, _, _, rot in got)  # unrotated baseline
    assert sum(1 for m, a, *_ in got if a == 4) == 13  # 4 methods x 3 rotations + SmoothQuant
    assert sorted(m for m, a, *_ in got if a == 8) == sorted(args.act_methods)
    keys = [cell_key(m, bits, a, tag) for m, bits, a, _, _, tag, _, _ in every]
    assert len(set(keys)) == len(keys) == len(got) + 3  # and the three --w4a8 cells


def test_rotations_pick_the_rotated_cells_and_keep_the_unrotated_baseline():
    from types import SimpleNamespace
    args = SimpleNamespace(budgets=[], methods=[], w4a8=False, activations=[4, 8],
                           act_methods=['smoothquant', 'qvla'], act_episodes=100, samples=16,
                           ablation=False, a4_clip=0.9, rotations=['hadamard'])
    got = {(m, a, rot) for m, _, a, _, _, _, _, rot in cells(args)}
    assert got == {('smoothquant', 4, None), ('qvla', 4, 'hadamard'),
                   ('smoothquant', 8, None), ('qvla', 8, None)}


def test_searched_clip_cells_are_tagged_apart_from_the_fixed_clip_ones():
    from types import SimpleNamespace
    args = SimpleNamespace(budgets=[], methods=[], w4a8=False, activations=[4, 8],
                           act_methods=['rtn', 'qvla'], act_episodes=100, samples=16,
                           ablation=False, a4_clip='search',
                           rotations=['none', 'hadamard', 'quarot'])
    tags = {(m, a, tag) for m, _, a, _, _, tag, _, _ in cells(args)}
    assert tags == {('rtn', 4, 'clip search'), ('rtn', 4, 'hadamard, clip search'),
                    ('rtn', 4, 'quarot, clip search'),
                    ('qvla', 4, 'clip search'), ('qvla', 4, 'hadamard, clip search'),
                    ('qvla', 4, 'quarot, clip search'),
                    ('rtn', 8, ''), ('qvla', 8, '')}  # A8 cells do not clip


def test_the_plot_draws_weight_only_cells_per_method(tmp_path, monkeypatch):
    from matplotlib.axes import Axes
    drawn = []
    monkeypatch.setattr(Axes, 'errorbar', lambda self, xs, ys, **kw: drawn.append(
        (kw['label'], list(xs))))
    cell = {'real_bits_per_param': 4.17, 'success_rate': 0.9, 'wilson95': [0.8, 0.95]}
    rows = [_row('qvla', **cell), _row('qvla', **{**cell, 'act_bits': 4}),
            _row('qvla', **{**cell, 'tag': 'hadamard', 'act_bits': 4})]
    plot(rows, {'success_rate': 0.9}, tmp_path / 'p.png')
    assert drawn == [('qvla', [4.17])] and (tmp_path / 'p.png').is_file()
