# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Per-layer activation clip ratios: the grid's least output error, output not input error."""

import pytest
import torch

from qvla_ros.quant.act_clip import best_clip, clip_errors, search_clips
from qvla_ros.quant.activation import ActSpec, CLIP_GRID
from qvla_ros.quant.calibration import LayerInputs


def _reference_error(x, w, bits, c):
    """Sum over tokens of ||(Q_c(x) - x) W^T||^2, rounding each token by hand."""
    qmax = 2 ** (bits - 1) - 1
    total = 0.0
    for t in x.double():
        step = c * t.abs().max() / qmax
        q = torch.clamp(torch.round(t / step), -qmax - 1, qmax) * step
        total += float(((q - t) @ w.double().T).square().sum())
    return total


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('bits', [4, 8])
def test_the_chosen_ratio_has_the_least_output_error_of_the_grid(seed, bits):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(24, 32, generator=gen) * torch.rand(32, generator=gen) * 3  # (T, K)
    w = torch.randn(16, 32, generator=gen)  # (N, K)
    errors = clip_errors(x, w, ActSpec(bits))
    expected = [_reference_error(x, w, bits, c) for c in CLIP_GRID]
    assert torch.allclose(errors, torch.tensor(expected, dtype=errors.dtype), rtol=1e-6)
    assert best_clip(x, w, ActSpec(bits)) == CLIP_GRID[min(range(len(expected)),
                                                           key=expected.__getitem__)]


def test_flat_inputs_keep_their_whole_range_at_eight_bits():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(32, 64, generator=gen)
    flat = torch.rand(256, 64, generator=gen) * 2 - 1  # no tails: clipping only saturates
    assert best_clip(flat, w, ActSpec(8)) == 1.0


def test_the_error_is_measured_on_the_output_the_weight_reads():
    x = torch.full((8, 16), 0.3)
    x[:, 1::2] = -0.7
    x[:, 0] = 4.0  # an outlier channel
    w = torch.ones(4, 16)
    ignores_outlier, reads_only_outlier = w.clone(), torch.zeros(4, 16)
    ignores_outlier[:, 0], reads_only_outlier[:, 0] = 0.0, 1.0
    assert best_clip(x, ignores_outlier, ActSpec(4)) < 1.0  # a finer step for the rest
    assert best_clip(x, reads_only_outlier, ActSpec(4)) == 1.0  # saturating it costs


def test_search_reads_each_layers_sample_rows():
    gen = torch.Generator().manual_seed(1)
    weights = {'a': torch.randn(8, 16, generator=gen), 'b': torch.randn(8, 16, generator=gen)}
    rows = torch.distributions.StudentT(2.0).sample((64, 16))
    samples = {k: LayerInputs(rows, rows.abs().amax(0), rows.double().T @ rows.double(), 64)
               for k in weights}
    clips = search_clips(weights, samples, ActSpec(4, rotation='hadamard'))
    assert set(clips) == {'a', 'b'} and set(clips.values()) <= set(CLIP_GRID)
    assert clips['a'] == best_clip(rows, weights['a'], ActSpec(4))
