# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Closed-loop bench bookkeeping: stale cached cells are tagged (kept) and their cells rerun."""

from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest  # noqa: E402

from bench.closed_loop import (cell_key, check_same_schedule, check_same_weights,  # noqa: E402
                               OLD_EXECUTE_STEPS, retag_stale, SAMPLING, weights_digest)


def _row(method, **extra):
    return {'method': method, 'target_bits': 4.0, 'act_bits': None, 'tag': '', **extra}


def test_cells_made_under_old_settings_are_tagged_once():
    old = retag_stale(_row('qvla'), 0.05)  # no cap, no sampling recorded: the oldest rows
    assert old['tag'] == 'prune<=0.5, head-calib' and old['max_prune_fraction'] == 0.5
    assert retag_stale(old, 0.05) == old  # idempotent across resumed runs
    gptq = retag_stale(_row('gptq'), 0.05)
    assert gptq['tag'] == 'head-calib'  # calibrated, no prune cap
    assert cell_key('gptq', 4.0, None, gptq['tag']) != cell_key('gptq', 4.0, None)
    w4a8 = retag_stale(_row('smoothquant', act_bits=8, tag='w4a8'), 0.05)
    assert w4a8['tag'] == 'w4a8, head-calib'


def test_current_and_uncalibrated_cells_are_kept_as_they_are():
    for row in (_row('rtn'), _row('fp'),
                _row('qvla', max_prune_fraction=0.05, calibration_sampling=SAMPLING),
                _row('awq', calibration_sampling=SAMPLING)):
        assert retag_stale(row, 0.05) == row
    assert retag_stale(_row('layerwise', max_prune_fraction=0.05,
                            calibration_sampling=SAMPLING), 0.1)['tag'] == 'prune<=0.05'


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
    check_same_schedule({'checkpoint_sha256': 'a'}, OLD_EXECUTE_STEPS, out)  # before recorded
    with pytest.raises(SystemExit, match='executed 4 actions per chunk; this run executes 8'):
        check_same_schedule({'checkpoint_sha256': 'a'}, 8, out)
    with pytest.raises(SystemExit, match='--fresh'):
        check_same_schedule({'execute_steps': 8}, 2, out)
