# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The README's main job over real ROS 2: sim_node <-> policy_node (shipped 4-bit QVLA
reference) run by sim_supervisor, three episodes, through the pip launch runner."""

import json
from pathlib import Path

import pytest

from qvla_ros.ros.launcher import Launch

ROOT = Path(__file__).resolve().parents[2]
QUANTIZED = ROOT / 'checkpoints' / 'tabletop-small-qvla-w4'


@pytest.mark.ros
def test_sim_demo_three_episodes(tmp_path, domain_id):
    assert (QUANTIZED / 'model.safetensors').is_file(), 'the shipped checkpoint is missing'
    out = tmp_path / 'demo'
    code = Launch('sim_demo', domain_id=domain_id, overrides=[
        'episodes:=3', f'out_dir:={out}', f'model:={QUANTIZED}']).run()
    assert code == 0, 'the supervisor reported unfinished episodes or a node died'
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['episodes'] == 3 and len(summary['per_episode']) == 3
    assert summary['plan_id'], 'the policy node did not run the packed checkpoint'
    seeds = [r['seed'] for r in summary['per_episode']]
    assert seeds == [200000, 200001, 200002]
    for r in summary['per_episode']:
        # every episode ended in the sim: success, or the step limit
        assert r['finished'] and (r['success'] or r['steps'] == 80), r
    assert summary['control_rate_hz'] > 6.0
    # Inference time depends on the host and on what shares its cores (here the sim's
    # renderer); bench/ros_latency.py measures it. The demo must report it.
    assert 0 < summary['latency_p50_ms'] <= summary['latency_p99_ms']
    assert (out / 'episode0.png').stat().st_size > 1000
