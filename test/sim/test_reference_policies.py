# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The shipped FP reference policy: shipping limits, it beats a constant predictor on fresh
expert data, and it still succeeds in closed loop (10 evaluation episodes).

Its measured success over 100 evaluation episodes is in README / bench/results (59 %, below
the 80 % goal; see the #7 note). The closed-loop check asks for at least MIN_SUCCESSES of the
10 episodes on fixed seeds; the checkpoint solved 4 of them when this was written.
"""

import json
from pathlib import Path

import numpy as np
import torch

from qvla_ros.models.checkpoint import load_policy
from qvla_ros.runtime.types import Observation
from qvla_ros.sim.evaluate import EvalConfig, evaluate
from qvla_ros.sim.tabletop import TabletopEnv

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / 'checkpoints' / 'tabletop-small'
MIN_SUCCESSES = 2


def test_shipping_limits():
    files = {p.name: p.stat().st_size for p in CKPT.iterdir()}
    assert {'config.json', 'model.safetensors', 'norm_stats.json'} <= set(files)
    assert sum(files.values()) <= 25 * 1024 * 1024
    assert 'default' in json.loads((CKPT / 'norm_stats.json').read_text())


def test_policy_beats_a_constant_on_fresh_expert_steps():
    policy = load_policy(str(CKPT))
    env = TabletopEnv()
    preds, labels = [], []
    try:
        for seed in range(300000, 300006):  # never used for training or evaluation
            obs, text = env.reset(seed)
            expert = env.expert()
            done = False
            while not done:
                action = expert.act()
                with torch.no_grad():
                    chunk = policy.predict(Observation({'top': obs['image']}, text,
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


def test_closed_loop_still_succeeds():
    res = evaluate(EvalConfig(str(CKPT), 'tabletop', tuple(range(100000, 100010))), workers=2)
    assert res['episodes'] == 10
    assert res['successes'] >= MIN_SUCCESSES, [(e['seed'], e['success'])
                                               for e in res['per_episode']]
    assert res['policy_latency_ms'] < 200
