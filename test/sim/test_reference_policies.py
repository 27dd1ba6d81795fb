# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The shipped FP reference policies (one per suite): shipping limits, each beats a constant
predictor on fresh expert data, and each still succeeds in closed loop.

Closed-loop outcomes are not reproducible across machines: another CPU's float rounding moves
a rollout a little and the contacts amplify it, so each episode's success is a draw at the
policy's success rate (the first-stage Meta-World policy solved 4 of its 10 test seeds here and
1 on the CI machine). The closed-loop check is therefore binomial: the pass mark is the most
successes that a policy as good as the lower Wilson bound of its measured FP success (the
100-episode row in bench/results/closed_loop_<suite>.json, which must be for these weights)
reaches with probability at least 1 - FALSE_FAILURE. A broken policy (0 successes) fails.
"""

import json
from math import comb
from pathlib import Path
import sys

import numpy as np
import pytest
import torch

from qvla_ros.core.types import Observation
from qvla_ros.models.checkpoint import load_policy
from qvla_ros.sim.evaluate import EvalConfig, evaluate
from qvla_ros.sim.suites import make_env

ROOT = Path(__file__).resolve().parents[2]
EPISODES = {'tabletop': 10, 'metaworld': 30}
FALSE_FAILURE = 1e-3  # per suite, for a policy at its measured lower bound
SUITES = sorted(EPISODES)


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
                    chunk = policy.predict(Observation(obs['images'], text, obs['proprio']))
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


def _measured_fp(suite: str) -> dict:
    """Return the FP row of the suite's closed-loop results, checked to be for these weights
    and for the chunk schedule the test runs."""
    sys.path.insert(0, str(ROOT))
    from bench.closed_loop import recorded_schedule, weights_digest  # what the bench records
    results = json.loads((ROOT / 'bench' / 'results' / f'closed_loop_{suite}.json').read_text())
    digest = weights_digest(str(_ckpt(suite)))
    assert results['meta']['checkpoint_sha256'] == digest, 'results are for other weights'
    steps = recorded_schedule(results['meta'])
    from qvla_ros.models.checkpoint import load_policy
    from qvla_ros.runtime.chunking import checkpoint_schedule
    recorded = checkpoint_schedule(load_policy(str(_ckpt(suite)))).execute_steps
    assert steps == recorded, f'results executed {steps} actions per chunk, the checkpoint ' \
        f'records {recorded}'
    return results['fp']


def pass_mark(episodes: int, rate: float, false_failure: float) -> int:
    """Return the largest k with P(Binomial(episodes, rate) < k) <= false_failure."""
    below, k = 0.0, 0
    while k < episodes:
        below += comb(episodes, k) * rate ** k * (1 - rate) ** (episodes - k)  # P(X = k)
        if below > false_failure:
            break
        k += 1
    return k


def test_pass_mark_is_a_binomial_lower_quantile():
    assert pass_mark(10, 0.66, 1e-3) == 2  # P(X < 2) = 4.2e-4, P(X < 3) = 3.9e-3
    assert pass_mark(30, 0.255, 1e-3) == 1  # P(X < 1) = 1.5e-4, P(X < 2) = 1.7e-3
    assert pass_mark(10, 1.0, 1e-3) == 10 and pass_mark(10, 0.0, 1e-3) == 0


@pytest.mark.parametrize('suite', SUITES)
def test_closed_loop_still_succeeds(suite):
    fp = _measured_fp(suite)
    assert fp['episodes'] >= 100
    need = pass_mark(EPISODES[suite], fp['wilson95'][0], FALSE_FAILURE)
    assert need >= 1
    seeds = tuple(range(100000, 100000 + EPISODES[suite]))  # the first evaluation seeds
    res = evaluate(EvalConfig(str(_ckpt(suite)), suite, seeds), workers=2)
    assert res['episodes'] == EPISODES[suite]
    assert res['successes'] >= need, [(e['seed'], e['success']) for e in res['per_episode']]
    assert res['policy_latency_ms'] < 200
