# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The fused rotation and token rounding against plain torch: interpreter on CPU, real GPU.

The reference is built here from scratch (a float64 Kronecker power of [[1, 1], [1, -1]]),
not from the kernel's helpers; the rounding reference is ``fake_quant_tokens``.
"""

import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import torch
    from qvla_ros.kernels.triton_hadamard import rotate_quant_tokens
    from qvla_ros.quant.activation import ActSpec, fake_quant_tokens

    def reference(x, d, n, inv):
        h = torch.ones(1, 1, dtype=torch.float64)
        while h.shape[0] < n:
            h = torch.kron(torch.tensor([[1., 1.], [1., -1.]], dtype=torch.float64), h)
        k = x.shape[-1]
        y = (x.double() * d).reshape(-1, k // n, n) @ h.T / n ** 0.5
        return (y.reshape(x.shape) * inv.double()).float()

    torch.manual_seed(0)
    worst = 0.0
    # One row per block (16, 64), L = I (x) H_N2 with N2 < 16 (128, 512), N2 >= 16 (1024,
    # 4096); K of 1, 3, 5 and 37 blocks; a token that is all zeros.
    for n, k in ((16, 16 * 37), (64, 192), (128, 384), (512, 1024), (1024, 1024),
                 (4096, 4096), (256, 1280)):
        for dtype in (torch.float32, torch.float16):
            x = (torch.randn(2, 3, k) * (1 + 20 * (torch.rand(k) < 0.02))).to(dtype)
            x[1, 2] = 0
            d = torch.randint(0, 2, (k,), dtype=torch.int8) * 2 - 1
            inv = (torch.rand(k) + 0.5).half()
            ref = reference(x.float(), d, n, inv.float())
            y = rotate_quant_tokens(x, d, n, inv, 16)
            assert y.dtype == dtype and y.shape == x.shape
            tol = 2e-6 if dtype == torch.float32 else 2e-3
            rel = ((y.float() - ref).abs().max() / ref.abs().max()).item()
            assert rel <= tol, (n, k, dtype, rel)
            worst = max(worst, rel)
            for bits, clip in ((8, 1.0), (4, 0.9)):
                q = rotate_quant_tokens(x, d, n, inv, bits, clip).float()
                r = fake_quant_tokens(ref, ActSpec(bits, clip))
                qmax = 2 ** (bits - 1) - 1
                step = ref.abs().amax(-1, keepdim=True).clamp(min=1e-8) * clip / qmax
                # the reference's grid point, but for the output dtype's own rounding (1 ulp)
                ulp = r.abs() * (2 ** -23 if dtype == torch.float32 else 2 ** -10)
                err = (((q - r).abs() - ulp).clamp(min=0) / step).max().item()
                assert err <= 1e-3, (n, bits, dtype, err)
                assert torch.all(q[1, 2] == 0)
    # The rotation QuantizedLinear holds: its signs, its block order and its block layout.
    from qvla_ros.quant.rotation import Rotation
    for k in (64, 512, 2048):
        rot, x = Rotation(k, seed=3), torch.randn(4, k)
        assert rot.m == 1
        y = rotate_quant_tokens(x, rot.signs(), rot.block)
        assert torch.allclose(y, rot(x), atol=1e-5), k
    try:
        rotate_quant_tokens(torch.randn(2, 96), torch.ones(96), 96)
    except ValueError as e:
        assert 'Sylvester blocks of order 16..4096 dividing K, got 96' in str(e), e
    else:
        raise AssertionError('a block of order 96 accepted')
    print('worst relative error', worst)
''')


@pytest.mark.slow
def test_fused_rotation_under_interpreter(interpreted):
    assert 'worst relative error' in interpreted(SCRIPT)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('bits', [16, 8, 4])
@pytest.mark.parametrize('k', [4096, 11008, 1152])
def test_quantized_linear_takes_the_fused_path_on_a_gpu(bits, k):
    from qvla_ros.quant.activation import ActSpec
    from qvla_ros.quant.apply import QuantizedLinear
    from qvla_ros.quant.rotation import Rotation
    inner = torch.nn.Linear(k, 64).cuda().to(torch.bfloat16)
    layer = QuantizedLinear(inner, None, ActSpec(bits, 0.9), Rotation(k, seed=1)).cuda()
    x = torch.randn(37, k, device='cuda', dtype=torch.bfloat16)
    rot = layer.rotation
    # The torch path in float32, then the layer as it runs (fused where the blocks allow).
    want = rot(x.float())
    if bits < 16:
        from qvla_ros.quant.activation import fake_quant_tokens
        want = fake_quant_tokens(want, ActSpec(bits, 0.9))
    assert layer.fused(x) == (rot.m == 1)  # 1152 has a Paley factor: the torch path
    got = layer(x).float()
    expect = inner(want.to(torch.bfloat16)).float()
    assert ((got - expect).abs().max() / expect.abs().max()).item() < 2e-2
