# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The fused kernel on a real GPU in bf16 and fp16 (skipped without CUDA; see gpu_check.sh)."""

import pytest
import torch

from qvla_ros.core.spec import QuantSpec
from qvla_ros.kernels.format import PackedLayout, reference_linear
from qvla_ros.kernels.linear import MixedBitLinear

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason='needs CUDA')]


def _qvla_mix(n, seed=0):
    """20 % 8-bit, 45 % 4-bit, 30 % 2-bit, 5 % pruned: 4.0 bits per parameter."""
    p = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    return torch.where(p < 0.2, 8, torch.where(p < 0.65, 4, torch.where(p < 0.95, 2, 0)))


@pytest.mark.parametrize('dtype,tol', [(torch.bfloat16, 1e-2), (torch.float16, 1e-2)])
@pytest.mark.parametrize('m', [1, 7, 64, 256, 600])
@pytest.mark.parametrize('shape', [(1536, 384), (1000, 1100)])
@pytest.mark.parametrize('gs', [None, 128])
def test_kernel_matches_reference(dtype, tol, m, shape, gs):
    if gs and shape[1] % gs:
        pytest.skip('group size must divide in_features')
    n, k = shape
    bits = _qvla_mix(n)
    bits[:n // 20] = 16
    bits[n // 20:n // 10] = 3
    layout = PackedLayout.from_float(torch.randn(n, k, device='cuda') * 0.02, bits,
                                     QuantSpec(group_size=gs),
                                     bias=torch.randn(n, device='cuda'), dense_dtype=dtype)
    from qvla_ros.kernels.triton_dequant import dequant_linear
    from qvla_ros.kernels.triton_gemv import mixed_gemv
    from qvla_ros.kernels.triton_mixed import mixed_linear
    x = torch.randn(m, k, device='cuda', dtype=dtype)
    ref = reference_linear(x.float(), layout).float()
    # Fixed tiles keep this matrix fast; test_auto_path_and_cuda_graph and the benchmark
    # exercise the autotuned kernels.
    runs = {'fused': lambda: mixed_linear(x, layout, block=(1, 64, 64) if m == 1
                                          else (64, 64, 64)),
            'fused1': lambda: mixed_linear(x, layout, block=(1, 64, 64) if m == 1
                                           else (64, 64, 64), split=False),
            'dequant': lambda: dequant_linear(x, layout)}
    if m == 1:
        runs['gemv'] = lambda: mixed_gemv(x, layout, block=(4, 256))
    for path, run in runs.items():
        y = run()
        assert y.shape == (m, n) and y.dtype == dtype, path
        rel = ((y.float() - ref).abs().max() / ref.abs().max()).item()
        assert rel <= tol, f'{path}: relative error {rel:.2e} > {tol}'


def test_module_on_cuda_dispatches_to_triton():
    lin = torch.nn.Linear(256, 512).cuda().half()
    mod = MixedBitLinear.from_float(lin, _qvla_mix(512))
    x = torch.randn(3, 256, device='cuda', dtype=torch.float16)
    ref = reference_linear(x.float(), mod.layout)
    assert ((mod(x).float() - ref).abs().max() / ref.abs().max()) < 1e-2


@pytest.mark.parametrize('m', [1, 64])
def test_auto_path_and_cuda_graph(m):
    """The measured path is correct, and a CUDA-graph replay gives the eager result."""
    from qvla_ros.kernels import triton_auto
    bits = _qvla_mix(1024, seed=3)
    layout = PackedLayout.from_float(torch.randn(1024, 512, device='cuda') * 0.02, bits,
                                     bias=torch.randn(1024, device='cuda'))
    x = torch.randn(m, 512, device='cuda', dtype=torch.float16)
    eager = triton_auto.auto_linear(x, layout)  # measures and caches the path
    assert triton_auto.choose(x, layout) in triton_auto.candidates(layout, m)
    ref = reference_linear(x.float(), layout).float()
    assert ((eager.float() - ref).abs().max() / ref.abs().max()) < 1e-2
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = triton_auto.auto_linear(x, layout)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.allclose(out, triton_auto.auto_linear(x, layout), atol=1e-3, rtol=1e-3)
