# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Quantizer math: error bounds, monotone error in bits, pruning and specs."""

import pytest
import torch

from qvla_ros.core.primitives import dequantize_rows, fake_quant_rows, quantize_rows
from qvla_ros.core.spec import QuantSpec, Scheme

SPECS = [QuantSpec(), QuantSpec(scheme=Scheme.SYMMETRIC), QuantSpec(group_size=32),
         QuantSpec(clip_search=True)]


@pytest.mark.parametrize('spec', SPECS, ids=lambda s: f'{s.scheme.value}-{s.group_size}-'
                         f'{s.clip_search}')
@pytest.mark.parametrize('seed', range(3))
def test_error_bound_and_monotone(spec, seed):
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(seed)) * (seed + 0.1)
    errs = []
    for bits in (2, 3, 4, 8):
        qr = quantize_rows(w, bits, spec)
        assert qr.codes.dtype == torch.uint8 and int(qr.codes.max()) < 2 ** bits
        err = (dequantize_rows(qr) - w).abs()
        if not spec.clip_search:
            # Round-to-nearest on the grid: at most half a step, plus the clamp for symmetric.
            step = qr.scale.repeat_interleave(qr.group_size, dim=1)
            slack = step if spec.scheme is Scheme.SYMMETRIC else 0.5 * step
            assert (err <= slack * (1 + 1e-4) + 1e-6).all()
        errs.append(err.pow(2).mean().item())
    assert errs == sorted(errs, reverse=True), f'error not monotone in bits: {errs}'


def test_asymmetric_2bit_uses_four_levels():
    w = torch.linspace(-1, 1, 64).repeat(4, 1)
    qr = quantize_rows(w, 2)
    assert qr.codes.unique().numel() == 4


def test_clip_search_never_worse():
    w = torch.randn(16, 256)
    w[:, 0] = 8.0  # an outlier stretches the plain range
    for bits in (2, 3, 4):
        plain = (dequantize_rows(quantize_rows(w, bits)) - w).pow(2).sum(1)
        clip = (dequantize_rows(quantize_rows(w, bits, QuantSpec(clip_search=True)))
                - w).pow(2).sum(1)
        assert (clip <= plain + 1e-6).all() and clip.sum() < plain.sum()


def test_fake_quant_rows_keeps_prunes_and_quantizes():
    w = torch.randn(6, 64)
    bits = torch.tensor([16, 0, 8, 4, 2, 3])
    out = fake_quant_rows(w, bits)
    assert torch.equal(out[0], w[0]) and torch.equal(out[1], torch.zeros(64))
    for row, b in ((2, 8), (3, 4), (4, 2), (5, 3)):
        assert torch.allclose(out[row], dequantize_rows(quantize_rows(w[row:row + 1], b))[0])
    assert torch.equal(w, w.clone())  # input untouched


@pytest.mark.parametrize('bad,match', [
    (dict(bits=5), 'unsupported bit-width'),
    (dict(bits=16), 'quantize_rows takes bits'),
])
def test_bad_bits(bad, match):
    with pytest.raises(ValueError, match=match):
        quantize_rows(torch.randn(2, 8), **bad)


def test_bits_per_row_length_checked():
    with pytest.raises(ValueError, match='one per output row'):
        fake_quant_rows(torch.randn(4, 8), torch.tensor([4, 4]))


def test_spec_validation_and_roundtrip():
    spec = QuantSpec(scheme='symmetric', group_size=64, clip_search=True)
    assert QuantSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match='group_size'):
        QuantSpec(group_size=12)
    with pytest.raises(ValueError, match='fields must be exactly'):
        QuantSpec.from_dict({'scheme': 'asymmetric'})
    with pytest.raises(ValueError):
        QuantSpec(scheme='nope')
