# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Finished shards survive a crash: a rerun computes only the missing ones, same result."""

from dataclasses import replace

import pytest
import torch

from qvla_ros.cli.qvla import main as qvla
from qvla_ros.models.checkpoint import load_policy
from qvla_ros.quant.calibration_batch import calibration_batch
from qvla_ros.quant.sensitivity import (exact_sensitivity, hybrid_sensitivity, SensitivityConfig,
                                        SerialExecutor)
from qvla_ros.quant.shard_store import fingerprint, ShardStore
from qvla_ros.storage.errors import ArtifactError

CFG = SensitivityConfig(method='exact', bits=(0, 4), rows_per_pass=4)


@pytest.fixture(scope='module')
def job():
    policy = load_policy('toy:0')
    return policy, calibration_batch(policy, None, 2, 2, 1)


class Crashing(SerialExecutor):
    """Runs shards here, and dies after ``limit`` of them (a crash between two shards)."""

    def __init__(self, limit):
        self.limit, self.ran = limit, 0

    def run_shards(self, policy, batch, cfg, shards, hessians, on_result):
        def counted(shard, scores):
            if self.ran == self.limit:
                raise KeyboardInterrupt('killed')
            self.ran += 1
            on_result(shard, scores)
        super().run_shards(policy, batch, cfg, shards, hessians, counted)


def test_a_rerun_computes_only_the_missing_shards_and_gives_the_same_scores(job, tmp_path):
    policy, batch = job
    expected = exact_sensitivity(policy, batch, CFG)
    key = fingerprint(policy, batch, CFG)
    with ShardStore(tmp_path / 's', key) as store:
        with pytest.raises(KeyboardInterrupt):
            exact_sensitivity(policy, batch, CFG, store=store, executor=Crashing(5))
    assert len(list((tmp_path / 's').glob('shard-*'))) == 5
    rest = Crashing(10 ** 6)
    with ShardStore(tmp_path / 's', key) as store:
        got = exact_sensitivity(policy, batch, CFG, store=store, executor=rest)
        total = len(store.done())
    assert rest.ran == total - 5
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_hybrid_refinement_resumes_too(job, tmp_path):
    policy, batch = job
    cfg = replace(CFG, method='hybrid', refine_fraction=0.2, rows_per_pass=2)
    expected = hybrid_sensitivity(policy, batch, cfg)
    key = fingerprint(policy, batch, cfg)
    with ShardStore(tmp_path / 's', key) as store:
        with pytest.raises(KeyboardInterrupt):
            hybrid_sensitivity(policy, batch, cfg, store=store, executor=Crashing(2))
    with ShardStore(tmp_path / 's', key) as store:
        got = hybrid_sensitivity(policy, batch, cfg, store=store)
    for k in expected[0]:
        assert torch.equal(got[0][k], expected[0][k]) and torch.equal(got[1][k], expected[1][k])


def test_the_fingerprint_names_model_data_and_settings(job):
    policy, batch = job
    key = fingerprint(policy, batch, CFG)
    assert key == fingerprint(policy, batch, replace(CFG, progress=True))
    assert key != fingerprint(policy, batch, replace(CFG, bits=(0, 2)))
    assert key != fingerprint(policy, {k: v + 1 for k, v in batch.items()}, CFG)
    assert key != fingerprint(load_policy('toy:1'), batch, CFG)


def test_another_jobs_shards_are_refused_and_damage_is_one_line(tmp_path):
    with ShardStore(tmp_path / 's', 'job-a'):
        pass
    with pytest.raises(ArtifactError, match='shards of another measurement'):
        ShardStore(tmp_path / 's', 'job-b').__enter__()
    store = ShardStore.open(tmp_path / 's', 'job-b', replace=True)
    (tmp_path / 's' / 'shard-0.safetensors').write_bytes(b'garbage')
    with pytest.raises(ArtifactError, match='not a readable safetensors'):
        store.done()
    store.__exit__()
    with ShardStore(tmp_path / 's', 'job-b'):
        with pytest.raises(ArtifactError, match='held by process'):
            ShardStore(tmp_path / 's', 'job-b').__enter__()


def test_the_command_resumes_an_interrupted_measurement(tmp_path, monkeypatch, capsys):
    from qvla_ros.quant import sensitivity
    args = ['sensitivity', '--model', 'toy:0', '--synthetic', '2', '--method', 'exact',
            '--bits', '0,4']
    assert qvla([*args, '--out', str(tmp_path / 'whole.safetensors')]) == 0
    real, calls = sensitivity.run_shard, []

    def dies_at_the_fourth(*a, **k):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(sensitivity, 'run_shard', dies_at_the_fourth)
    out = tmp_path / 'cut.safetensors'
    assert qvla([*args, '--out', str(out)]) == 130
    monkeypatch.setattr(sensitivity, 'run_shard', real)
    capsys.readouterr()
    assert qvla([*args, '--out', str(out)]) == 0
    assert 'resuming: 3 shards already measured' in capsys.readouterr().out
    assert not (tmp_path / 'cut.safetensors.shards').exists()
    from safetensors.torch import load_file
    a, b = load_file(str(tmp_path / 'whole.safetensors')), load_file(str(out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_methods_calibration_keeps_its_exact_shards_for_the_next_run(tmp_path):
    from qvla_ros.quant.methods import apply_method, Calibration, MethodConfig
    policy = load_policy('toy:0')
    batch = calibration_batch(policy, None, 2, 2, 1)
    plain = apply_method(load_policy('toy:0'), Calibration(batch), MethodConfig('qvla-exact', 4))
    first = Calibration(batch, shards=tmp_path)
    kept = apply_method(load_policy('toy:0'), first, MethodConfig('qvla-exact', 4))
    assert kept[0].plan_id == plain[0].plan_id
    stores = list(tmp_path.iterdir())
    assert len(stores) == 1 and len(list(stores[0].glob('shard-*'))) > 0
    rest = Crashing(10 ** 6)
    again = apply_method(load_policy('toy:0'), Calibration(batch, shards=tmp_path, executor=rest),
                         MethodConfig('qvla-exact', 4))
    assert rest.ran == 0 and again[0].plan_id == plain[0].plan_id  # all read back
