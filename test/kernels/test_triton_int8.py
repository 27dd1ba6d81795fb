# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The int8-token (W4A8) path of the fused kernel: interpreter on CPU, real GPU when present.

The reference dequantizes the tokens (codes x scale) and runs ``reference_linear`` in float32;
the codes come from ``token_codes``, the grid every activation quantizer here shares.
"""

import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import torch
    from qvla_ros.core.primitives import token_codes
    from qvla_ros.core.spec import QuantSpec, Scheme
    from qvla_ros.kernels.format import PackedLayout, reference_linear
    from qvla_ros.kernels.triton_mixed import mixed_linear
    torch.manual_seed(0)
    worst = 0.0
    # Per-row and grouped scales, both schemes, bias or not, the GEMV (m = 1) and dot tiles
    # with masked edges, A8 and A4 codes, fp32 and fp16 out.
    for gs, k in ((None, 40), (None, 96), (32, 96), (64, 128)):
        for scheme in (Scheme.ASYMMETRIC, Scheme.SYMMETRIC):
            n = 70
            bits = torch.tensor([16, 8, 4, 3, 2, 0, 4] * 10)
            bias = torch.randn(n) if scheme is Scheme.ASYMMETRIC else None
            layout = PackedLayout.from_float(torch.randn(n, k), bits,
                                             QuantSpec(scheme, group_size=gs), bias=bias)
            for m in (1, 7, 33):
                for a_bits, dtype in ((8, torch.float32), (4, torch.float16)):
                    codes, scale = token_codes(torch.randn(m, k) * 3, a_bits)
                    ref = reference_linear(codes * scale, layout)
                    y = mixed_linear(codes.to(torch.int8), layout, x_scale=scale[:, 0],
                                     out_dtype=dtype)
                    assert y.dtype == dtype and y.shape == (m, n)
                    rel = ((y.float() - ref).abs().max() / ref.abs().max()).item()
                    tol = 1e-5 if dtype == torch.float32 else 2e-3
                    assert rel <= tol, (gs, k, scheme, m, a_bits, rel)
                    worst = max(worst, rel)
    # The single launch for every group computes the same (last layout and codes).
    one, split = (mixed_linear(codes.to(torch.int8), layout, x_scale=scale[:, 0],
                               out_dtype=torch.float32, split=s) for s in (False, True))
    assert torch.allclose(one, split, rtol=1e-5, atol=1e-4)
    # Float tokens, and groups an int8 MMA cannot step through, are refused.
    small = PackedLayout.from_float(torch.randn(8, 64), torch.full((8,), 4),
                                    QuantSpec(group_size=16))
    for tokens, lay, why in ((torch.randn(2, k), layout, 'int8 tokens expected'),
                             (torch.ones(2, 64, dtype=torch.int8), small, 'groups of 16')):
        try:
            mixed_linear(tokens, lay, x_scale=torch.ones(2))
        except ValueError as exc:
            assert why in str(exc), exc
        else:
            raise AssertionError(why)
    print('worst relative error', worst)
''')

LAYER_SCRIPT = textwrap.dedent('''
    import torch
    from qvla_ros.kernels.dispatch import Backend
    from qvla_ros.kernels.linear import MixedBitLinear
    from qvla_ros.kernels.triton_hadamard import rotate_quant_tokens
    from qvla_ros.quant.activation import ActSpec
    from qvla_ros.quant.apply import QuantizedLinear
    from qvla_ros.quant.rotation import Rotation
    torch.manual_seed(0)
    # The fused rotation's codes times its scales are its rounded values, bit for bit.
    x, rot = torch.randn(5, 256), Rotation(256, seed=2)
    for bits in (8, 4):
        codes, scale = rotate_quant_tokens(x, rot.signs(), rot.block, None, bits, 0.9,
                                           codes=True)
        assert codes.dtype == torch.int8 and scale.shape == (5,)
        assert int(codes.abs().max()) <= 2 ** (bits - 1)
        fake = rotate_quant_tokens(x, rot.signs(), rot.block, None, bits, 0.9)
        assert torch.equal(codes.float() * scale[:, None], fake), bits
    # A QuantizedLinear whose packed layer runs on Triton sends it int8 codes; the same layer
    # on the reference backend takes fake-quantized floats: the outputs agree.
    # Groups of 16 columns take the dequantized fallback.
    from qvla_ros.core.spec import QuantSpec
    lin = torch.nn.Linear(256, 48)
    bits = torch.tensor([16, 8, 4, 2] * 12)
    for rotation, spec in ((None, QuantSpec()), (rot, QuantSpec()),
                           (None, QuantSpec(group_size=16))):
        for act in (ActSpec(8), ActSpec(4, 0.9)):
            tri = MixedBitLinear.from_float(lin, bits, spec, backend=Backend.TRITON,
                                            dense_dtype=torch.float32)
            ref = MixedBitLinear.from_float(lin, bits, spec, backend=Backend.REFERENCE,
                                            dense_dtype=torch.float32)
            inv = torch.rand(256) + 0.5
            a = QuantizedLinear(tri, inv, act, rotation)
            b = QuantizedLinear(ref, inv, act, rotation)
            assert a.int8_tokens(x) and not b.int8_tokens(x)
            got, want = a(x), b(x)
            rel = ((got - want).abs().max() / want.abs().max()).item()
            assert rel <= 1e-5, (rotation is None, act, rel)
    print('layer ok')
''')


@pytest.mark.parametrize('gs,k', [(32, 4096), (64, 11008), (128, 4096), (4096, 4096)])
@pytest.mark.parametrize('m', [1, 7, 600])
def test_autotuning_keeps_int8_blocks_inside_scale_groups(gs, k, m):
    pytest.importorskip('triton')
    from qvla_ros.kernels.triton_mixed import _configs, prune_configs
    kept = prune_configs(_configs(), {'M': m, 'GS': gs, 'K': k}, INT8_X=True)
    assert kept, 'no config left'
    assert all(gs % c.kwargs['BLOCK_K'] == 0 or gs >= k for c in kept)
    assert all((c.kwargs['BLOCK_M'] == 1) == (m == 1) for c in kept)
    assert len({(tuple(sorted(c.kwargs.items())), c.num_warps, c.num_stages)
                for c in kept}) == len(kept)


@pytest.mark.slow
def test_int8_tokens_under_interpreter(interpreted):
    assert 'worst relative error' in interpreted(SCRIPT)


@pytest.mark.slow
def test_quantized_linear_sends_int8_codes_under_interpreter(interpreted):
    assert 'layer ok' in interpreted(LAYER_SCRIPT)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('m', [1, 16, 300])
@pytest.mark.parametrize('gs', [None, 128])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_int8_tokens_on_a_gpu(m, gs, dtype):
    from qvla_ros.core.primitives import token_codes
    from qvla_ros.core.spec import QuantSpec
    from qvla_ros.kernels.format import PackedLayout, reference_linear
    from qvla_ros.kernels.triton_mixed import mixed_linear
    n, k = 1536, 1024
    bits = torch.tensor([16, 8, 4, 4, 4, 2, 0, 4])[torch.randint(0, 8, (n,))]
    layout = PackedLayout.from_float(torch.randn(n, k, device='cuda') * 0.02, bits,
                                     QuantSpec(group_size=gs), bias=torch.randn(n, device='cuda'),
                                     dense_dtype=dtype)
    codes, scale = token_codes(torch.randn(m, k, device='cuda'), 8)
    ref = reference_linear(codes * scale, layout)
    got = mixed_linear(codes.to(torch.int8), layout, x_scale=scale[:, 0], out_dtype=dtype)
    assert ((got.float() - ref).abs().max() / ref.abs().max()).item() < 1e-2
