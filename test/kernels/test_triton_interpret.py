# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The Triton paths against the reference, under TRITON_INTERPRET=1 (fp16/fp32).

Each case runs in a subprocess because the interpreter flag must be set before triton loads.
On a GPU, bench/gpu_check.sh runs the same checks in bf16 and fp16.
"""

import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import sys, torch
    from qvla_ros.kernels.format import PackedLayout, reference_linear
    from qvla_ros.kernels.triton_mixed import mixed_linear
    from qvla_ros.core.spec import QuantSpec
    torch.manual_seed(0)
    worst = 0.0
    for gs in (None, 32):
        for m in (1, 7, 33):
            for dtype in (torch.float32, torch.float16):
                n, k = 70, 96
                bits = torch.tensor([16, 8, 4, 3, 2, 0, 4] * 10)
                layout = PackedLayout.from_float(torch.randn(n, k), bits,
                                                 QuantSpec(group_size=gs), bias=torch.randn(n))
                x = torch.randn(m, k).to(dtype)
                bias_before = layout.bias.clone()
                ref = reference_linear(x.float(), layout)
                for split in (True, False):  # a launch per bit group, or one for all
                    y = mixed_linear(x, layout, split=split)
                    assert y.dtype == dtype and y.shape == (m, n)
                    assert torch.equal(layout.bias, bias_before), 'kernel wrote into the bias'
                    rel = ((y.float() - ref).abs().max() / ref.abs().max()).item()
                    tol = 1e-5 if dtype == torch.float32 else 2e-3
                    assert rel <= tol, (gs, m, dtype, split, rel)
                    worst = max(worst, rel)
    # An odd shape with masked edges and no bias, and a layer with a single bit group.
    for bits in (torch.tensor([3, 2, 16] * 5), torch.full((13,), 4)):
        layout = PackedLayout.from_float(torch.randn(bits.numel(), 40), bits)
        x = torch.randn(5, 40, dtype=torch.float16)
        ref = reference_linear(x.float(), layout)
        rel = ((mixed_linear(x, layout).float() - ref).abs().max() / ref.abs().max()).item()
        assert rel <= 2e-3, rel
    print('worst relative error', worst)
''')


@pytest.mark.slow
def test_triton_kernel_under_interpreter(interpreted):
    assert 'worst relative error' in interpreted(SCRIPT)


PATHS_SCRIPT = textwrap.dedent('''
    import torch
    from qvla_ros.kernels.format import PackedLayout, reference_linear
    from qvla_ros.kernels.triton_auto import auto_linear, choose
    from qvla_ros.kernels.triton_dequant import dequantize_packed
    from qvla_ros.kernels.triton_gemv import mixed_gemv
    from qvla_ros.core.spec import QuantSpec
    torch.manual_seed(0)
    worst = 0.0
    # 100 columns: the last word of every width is partial; group 32 exercises group scales.
    for gs, k in ((None, 100), (32, 96), (None, 37)):
        for bias in (True, False):
            for dtype in (torch.float32, torch.float16):
                bits = torch.tensor([16, 8, 4, 3, 2, 0, 4, 2, 8] * 7)
                n = bits.numel()
                layout = PackedLayout.from_float(torch.randn(n, k), bits,
                                                 QuantSpec(group_size=gs),
                                                 bias=torch.randn(n) if bias else None)
                # dense tile in packed order == the reference rows in packed order
                w = dequantize_packed(layout, torch.float32, block=(8, 32))
                ref_w = layout.dequantize()[layout.perm.long()]
                assert torch.allclose(w, ref_w, atol=1e-6), (gs, k)
                for m, path in ((1, 'gemv'), (1, 'fused'), (1, 'fused1'), (1, 'dequant'),
                                (6, 'dequant')):
                    x = torch.randn(m, k).to(dtype)
                    y = auto_linear(x, layout, path)
                    assert y.dtype == dtype and y.shape == (m, n), (path, y.shape)
                    ref = reference_linear(x.float(), layout)
                    rel = ((y.float() - ref).abs().max() / ref.abs().max()).item()
                    tol = 1e-5 if dtype == torch.float32 else 3e-3
                    assert rel <= tol, (gs, k, bias, dtype, path, rel)
                    worst = max(worst, rel)
                # every tile size the autotuner may pick shares the masking logic
                x = torch.randn(k).to(dtype)
                for block in ((2, 16), (16, 32), (4, 128)):
                    y = mixed_gemv(x, layout, block=block)
                    ref = reference_linear(x.float()[None], layout)[0]
                    assert y.shape == (n,)
                    rel = ((y.float() - ref).abs().max() / ref.abs().max()).item()
                    assert rel <= (1e-5 if dtype == torch.float32 else 3e-3), (block, rel)
    lay = PackedLayout.from_float(torch.randn(8, 64), torch.full((8,), 4))
    assert choose(torch.randn(1, 64), lay) == 'gemv'
    assert choose(torch.randn(3, 64), lay) == 'fused'
    try:
        auto_linear(torch.randn(1, 64), lay, 'cuda-magic')
    except ValueError as e:
        assert 'expected one of' in str(e)
    else:
        raise AssertionError('unknown path accepted')
    try:
        mixed_gemv(torch.randn(2, 64), lay)
    except ValueError as e:
        assert 'one row of 64' in str(e)
    else:
        raise AssertionError('two rows accepted by the GEMV')
    print('worst relative error', worst)
''')


@pytest.mark.slow
def test_gemv_and_dequant_paths_under_interpreter(interpreted):
    assert 'worst relative error' in interpreted(PATHS_SCRIPT)
