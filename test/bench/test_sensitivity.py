# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The sensitivity benchmark's row sampling: exact on sampled rows is exact on all rows."""

from pathlib import Path
import sys

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.sensitivity import exact_on_rows, sample_rows  # noqa: E402
from qvla_ros.models.checkpoint import load_policy  # noqa: E402
from qvla_ros.quant.calibration_batch import calibration_batch  # noqa: E402
from qvla_ros.quant.sensitivity import run_shard, SensitivityConfig, Shard  # noqa: E402


def test_sampled_rows_are_distinct_sorted_in_range_and_seeded():
    rows = sample_rows({'a': 10, 'b': 3}, 4, seed=1)
    assert rows['a'].numel() == 4 and rows['b'].tolist() == [0, 1, 2]
    assert rows['a'].unique().numel() == 4 and torch.equal(rows['a'], rows['a'].sort().values)
    assert 0 <= rows['a'].min() and rows['a'].max() < 10
    assert torch.equal(sample_rows({'a': 10, 'b': 3}, 4, seed=1)['a'], rows['a'])
    assert not torch.equal(sample_rows({'a': 10, 'b': 3}, 4, seed=2)['a'], rows['a'])


def test_exact_on_sampled_rows_matches_the_full_layer_measurement():
    torch.manual_seed(0)
    policy = load_policy('ref-tiny:0')
    batch = calibration_batch(policy, None, 2, 2, 1)
    name, layer = next(iter(policy.quantizable_layers().items()))
    rows = sample_rows({name: layer.out_features}, 5)
    bits = (0, 4)
    sampled = exact_on_rows(policy, batch, rows, bits)[name]  # (2, 5)
    cfg = SensitivityConfig(bits=bits, method='exact')
    full = torch.stack([run_shard(policy, batch, Shard(name, 0, layer.out_features, b), cfg)
                        for b in bits])  # (2, N)
    assert sampled.shape == (2, 5)
    torch.testing.assert_close(sampled, full[:, rows[name]], rtol=1e-4, atol=1e-9)
    assert (sampled[0] > 0).all()  # pruning a row moves the actions
