# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The closed-loop goals are judged from the result files, not typed."""

import json
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import summary_closed_loop as summary  # noqa: E402


def _cell(method, bits, successes, episodes=100):
    return {'method': method, 'target_bits': bits, 'act_bits': None, 'tag': '',
            'episodes': episodes, 'successes': successes, 'success_rate': successes / episodes,
            'real_bits_per_param': bits + 0.17, 'wilson95': [0.0, 1.0]}


def test_goals_are_met_or_missed_by_the_numbers(tmp_path):
    fp = {**_cell('fp', 16, 90), 'seed0': 0, 'solved_seeds': list(range(90)),
          'by_task': {t: [3, 5] for t in summary.PRECISE_TASKS}}
    rows = [_cell('qvla-gptq', 4.0, 89), _cell('qvla-gptq', 3.0, 80), _cell('qvla', 4.0, 90)]
    meta = {'execute_steps': 8}
    for suite in ('tabletop', 'metaworld'):
        (tmp_path / f'closed_loop_{suite}.json').write_text(json.dumps(
            {'meta': meta, 'fp': fp, 'rows': rows}))
    lines = summary.goals_block(tmp_path).splitlines()
    assert lines[0] == '* tabletop FP success >= 95 %: 90/100, **missed**'
    assert lines[1].endswith("89/100 against FP's 90 on the same seeds, 98.89 %, **missed**")
    assert lines[2].startswith('* tabletop qvla W4 keeps >= 98.9 % of FP: 90/100')  # plain qvla
    assert lines[2].endswith('100.00 %, **met**')
    assert lines[3].endswith("80/100 against FP's 90 on the same seeds, 88.89 %, **missed**")
    assert lines[4] == '* metaworld FP success >= 85 %: 90/100, **met**'
    assert lines[5].startswith('* metaworld FP on each precise-point task >= 50 %: reach-v3 3/5')
    assert lines[5].endswith('**met**')
    headline = summary.headline_block(tmp_path)
    assert '| tabletop | 90/100 | 89/100 (99 % of FP; 4.17 bits) |' in headline


def test_w4a4_goals_judge_the_rotated_qvla_cell_against_every_w4a4_cell(tmp_path):
    fp = {**_cell('fp', 16, 90), 'seed0': 0, 'solved_seeds': list(range(90))}

    def a4(method, successes, dev, tag=''):
        return {**_cell(method, 4.0, successes), 'act_bits': 4, 'tag': tag,
                'mean_deviation': dev}
    rows = [_cell('qvla', 4.0, 88), a4('qvla', 87, 0.004, 'hadamard'), a4('qvla', 70, 0.02),
            a4('rtn', 40, 0.05), a4('smoothquant', 60, 0.03), a4('gptq', 80, 0.003, 'hadamard'),
            a4('qvla', 86, 0.001, 'quarot')]
    (tmp_path / 'closed_loop_tabletop.json').write_text(json.dumps(
        {'meta': {}, 'fp': fp, 'rows': rows}))
    lines = [x for x in summary.goals_block(tmp_path).splitlines() if 'W4A4' in x]
    assert lines[0].startswith('* tabletop qvla W4A4 (hadamard) keeps >= 95 % of FP: 87/100')
    assert '96.67 %, **met**' in lines[0]  # 87 of FP's 90
    assert 'of the 6 W4A4 cells' in lines[0]  # the W4A16 cell is not one
    assert lines[0].endswith('lowest qvla (quarot) 0.0010): **missed**')
    assert lines[1].startswith('* tabletop qvla W4A4 (quarot) keeps >= 95 % of FP: 86/100')
    assert lines[1].endswith('**met**; lowest action deviation of the 6 W4A4 cells (0.0010; '
                             'lowest qvla (quarot) 0.0010): **met**')
    assert lines[2].startswith('* tabletop W4A4 with Wilson 95 % intervals: qvla hadamard 87/100')
    assert 'qvla quarot 86/100' in lines[2]
    assert 'smoothquant 60/100' in lines[2] and 'rtn 40/100' in lines[2]
    assert 'quarot 86/100' in lines[3] and 'not rotated 70/100' in lines[3]
    assert len(lines) == 4  # no qvla-gptq W4A4 cells, no lines for them
    assert '88/100' not in '\n'.join(lines)  # the W4A16 qvla cell is another cell


def test_sensitivity_seconds_name_every_step_largest_calibration_first():
    meta = {'calibration_seconds': {
        '2': {'sensitivity_exact@refine=0.01': 3345.7, 'inputs': 1.0},
        '16': {'sensitivity_hybrid@refine=0.01': 500.3}}}
    line = summary._sensitivity_seconds(meta)
    assert line.endswith('hybrid@refine=0.01 on 16 samples 500 s; exact on 2 samples 3346 s.')
    assert 'inputs' not in line and summary._sensitivity_seconds({}) == ''


def test_the_deviation_goal_waits_for_another_methods_w4a4_cell(tmp_path):
    fp = {**_cell('fp', 16, 90), 'seed0': 0, 'solved_seeds': list(range(90))}
    rows = [{**_cell('qvla', 4.0, 88), 'act_bits': 4, 'tag': 'hadamard', 'mean_deviation': 0.01}]
    (tmp_path / 'closed_loop_metaworld.json').write_text(json.dumps(
        {'meta': {}, 'fp': fp, 'rows': rows}))
    line = [x for x in summary.goals_block(tmp_path).splitlines() if 'W4A4' in x][0]
    assert line.endswith('not judged: no other method has a W4A4 cell yet')
