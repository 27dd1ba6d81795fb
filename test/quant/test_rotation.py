# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Hadamard rotations: orthonormal for every width, exact when folded, kind to 4-bit tokens."""

import pytest
import torch

from qvla_ros.quant.activation import ActSpec, fake_quant_tokens
from qvla_ros.quant.rotation import (block_factors, pack_signs, paley_matrix, Rotation,
                                     unpack_signs)


def _matrix(rot: Rotation) -> torch.Tensor:
    """Return R (K, K) with rot(x) = x R^T."""
    return rot(torch.eye(rot.k, dtype=torch.float64)).T


@pytest.mark.parametrize('m', [4, 8, 12, 20, 24, 32, 44, 48, 60, 72])
def test_paley_matrices_are_hadamard(m):
    h = paley_matrix(m)
    assert set(h.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(h @ h.T, m * torch.eye(m))


def test_orders_without_a_paley_matrix_are_refused():
    for m in (6, 16, 28, 36):  # 16 - 1 = 15 and 36 - 1 = 35 are not prime; 6 is not 0 mod 4
        with pytest.raises(ValueError, match='Paley I gives no Hadamard'):
            paley_matrix(m)


@pytest.mark.parametrize('k', [1, 2, 3, 4, 6, 12, 40, 64, 96, 136, 256, 384, 1152, 1536])
def test_every_width_gets_an_orthonormal_rotation(k):
    rot = Rotation(k, seed=3)
    r = _matrix(rot)
    assert torch.allclose(r @ r.T, torch.eye(k, dtype=torch.float64), atol=1e-12)
    m, a = block_factors(k)
    assert k % rot.block == 0 and rot.block == m << a
    # within a block every entry has magnitude 1 / sqrt(n): outliers are spread evenly
    block = r[:rot.block, :rot.block].abs()
    assert torch.allclose(block, torch.full_like(block, rot.block ** -0.5))


@pytest.mark.parametrize('k', [1, 7, 12, 96, 384, 1536])
def test_the_inverse_is_the_transpose(k):
    rot = Rotation(k, seed=5)
    r = _matrix(rot)
    y = torch.randn(3, 2, k, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    assert torch.allclose(rot.inverse(y), y @ r, atol=1e-12)  # y R = R^T y per token
    assert torch.allclose(rot.inverse(rot(y)), y, atol=1e-12)
    assert rot.inverse(y.to(torch.bfloat16)).dtype == torch.bfloat16


def test_block_orders_are_the_largest_hadamard_divisors():
    assert block_factors(384) == (12, 5)  # the reference model's hidden size: 12 x 32
    assert block_factors(4096) == (1, 12)  # a power of two needs no Paley factor
    assert block_factors(11008) == (1, 8)  # Llama-2's MLP: 43 blocks of 256
    assert block_factors(7) == (1, 0)


def test_signs_pack_to_bits_and_back():
    gen = torch.Generator().manual_seed(0)
    for k in (1, 7, 8, 9, 384):
        bits = torch.randint(0, 2, (k,), generator=gen, dtype=torch.uint8)
        packed = pack_signs(bits)
        assert packed.numel() == (k + 7) // 8
        assert torch.equal(unpack_signs(packed, k), bits.to(torch.int8) * 2 - 1)
    assert not torch.equal(Rotation(64, 0).signs(), Rotation(64, 1).signs())


def test_cached_signs_follow_a_loaded_state():
    rot, other = Rotation(40, seed=0), Rotation(40, seed=5)
    x = torch.randn(3, 40, dtype=torch.float64)
    before = rot(x)  # the seed-0 signs are unpacked and kept
    assert not torch.equal(rot.signs(), other.signs())
    rot.load_state_dict(other.state_dict())
    assert torch.equal(rot.signs(), other.signs())
    assert torch.allclose(rot(x), other(x)) and not torch.allclose(rot(x), before)
    with torch.inference_mode():  # a model built or loaded there: no version counter
        fresh = Rotation(40, seed=5)
        fresh.load_state_dict(rot.state_dict())
        assert torch.equal(fresh.signs(), other.signs())
    assert torch.equal(fresh.signs(), other.signs())


def test_a_folded_rotation_leaves_the_product_unchanged():
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(5, 3, 384, generator=gen), torch.randn(16, 384, generator=gen)
    rot = Rotation(384)
    assert torch.allclose(rot(x) @ rot(w).T, x @ w.T, atol=1e-4)  # (R x) . (W R^T)


def test_half_precision_inputs_are_rotated_in_float32():
    x = torch.randn(4, 4096, generator=torch.Generator().manual_seed(3))
    rot = Rotation(4096)
    exact = rot(x.double())
    for dtype in (torch.bfloat16, torch.float16):
        got = rot(x.to(dtype))
        assert got.dtype == dtype
        rounding_only = (exact.to(dtype).double() - exact).abs().max()
        assert (got.double() - exact).abs().max() <= 2 * rounding_only + 1e-6


def test_rotation_shrinks_the_4_bit_error_of_outlier_tokens():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(64, 384, generator=gen)
    x[:, 7] *= 50.0  # one outlier channel, as LLM activations have
    rot, spec = Rotation(384), ActSpec(4)
    plain = (fake_quant_tokens(x, spec) - x).pow(2).sum()
    rotated = (fake_quant_tokens(rot(x), spec) - rot(x)).pow(2).sum()  # R orthonormal
    assert rotated < 0.2 * plain
