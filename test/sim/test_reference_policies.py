# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The shipped FP reference policies (one per suite): shipping limits, each beats a constant
predictor on fresh expert data, and each still succeeds in closed loop (10 evaluation
episodes).

Measured success rates are in README / bench/results (tabletop 75 % over 100 episodes, below
the 80 % goal; see the #7 note). The closed-loop check asks for at least MIN_SUCCESSES of the
10 episodes on fixed seeds; what each checkpoint solved when this was written is noted beside.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qvla_ros.models.checkpoint import load_policy
from qvla_ros.runtime.types import Observation
from qvla_ros.sim.collect import make_env
from qvla_ros.sim.evaluate import EvalConfig, evaluate

ROOT = Path(__file__).resolve().parents[2]
MIN_SUCCESSES = {'tabletop': 5,  # solved 8 of 10
                 'metaworld': 2}  # solved 4 of 10
SUITES = sorted(MIN_SUCCESSES)


def _ckpt(suite: str) -> Path:
    return ROOT / 'checkpoints' / f'{suite}-small'


@pytest.mark.parametrize('suite', SUITES)
def test_shipping_limits(suite):
    files = {p.name: p.stat().st_size for p in _ckpt(suite).iterdir()}
    assert {'config.json', 'model.safetensors', 'norm_stats.json'} <= set(files)
    assert sum(files.values()) <= 25 * 1024 * 1024
    assert 'default' in json.loads((_ckpt(suite) / 'norm_stats.json').read_text())


@pytest.mark.parametrize('suite', SUITES)
def test_policy_beats_a_constant_on_fresh_expert_steps(suite):
    policy = load_policy(str(_ckpt(suite)))
    env = make_env(suite)
    preds, labels = [], []
    try:
        for seed in range(300000, 300006):  # never used for training or evaluation
            obs, text = env.reset(seed)
            expert = env.expert()
            done = False
            while not done:
                action = expert.act()
                with torch.no_grad():
                    chunk = policy.predict(Observation({env.camera: obs['image']}, text,
                                                       obs['proprio']))
                preds.append(chunk.actions[0])
                labels.append(action)
                obs, _, done = env.step(action)
    finally:
        env.close()
    norm = policy.normalizer
    p = norm.normalize(np.stack(preds))[:, [0, 1, 2, 6]]
    y = norm.normalize(np.stack(labels))[:, [0, 1, 2, 6]]
    model_err = np.abs(p - y).mean()
    constant_err = np.abs(np.median(y, 0) - y).mean()
    assert model_err < 0.8 * constant_err, (model_err, constant_err)


@pytest.mark.parametrize('suite', SUITES)
def test_closed_loop_still_succeeds(suite):
    res = evaluate(EvalConfig(str(_ckpt(suite)), suite, tuple(range(100000, 100010))),
                   workers=2)
    assert res['episodes'] == 10
    assert res['successes'] >= MIN_SUCCESSES[suite], [(e['seed'], e['success'])
                                                      for e in res['per_episode']]
    assert res['policy_latency_ms'] < 200
