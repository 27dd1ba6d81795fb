# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The fused Triton kernel against the reference, under TRITON_INTERPRET=1 (fp16/fp32).

Each case runs in a subprocess because the interpreter flag must be set before triton loads.
On a GPU, bench/gpu_check.sh runs the same checks in bf16 and fp16.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import sys, torch
    from qvla_ros.kernels.format import PackedLayout, reference_linear
    from qvla_ros.kernels.triton_mixed import mixed_linear
    from qvla_ros.quant.spec import QuantSpec
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
                y = mixed_linear(x, layout)
                assert y.dtype == dtype and y.shape == (m, n)
                assert torch.equal(layout.bias, bias_before), 'kernel wrote into the bias'
                ref = reference_linear(x.float(), layout)
                rel = ((y.float() - ref).abs().max() / ref.abs().max()).item()
                tol = 1e-5 if dtype == torch.float32 else 2e-3
                assert rel <= tol, (gs, m, dtype, rel)
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
def test_triton_kernel_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1')
    out = subprocess.run([sys.executable, '-c', SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'worst relative error' in out.stdout
