# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The fused kernel as a GPU would run it, compiled on a CPU for the H100 (no GPU needed).

A per-group launch (``WIDTH`` b) must hold that group's branch alone, and int8 tokens must
reach int8 tensor-core MMAs; bench/ptx_mixed.py records the same for every tile.
"""

import pytest

from bench.ptx_mixed import INTS, MMA, signature
from bench.ptx_rotation import runtime_attrs


def _ptx(width: int) -> str:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from qvla_ros.kernels.triton_mixed import _mixed_kernel
    sig = signature('i8')
    src = ASTSource(fn=_mixed_kernel, signature=sig, constexprs={
        'HAS_BIAS': True, 'PER_ROW': True, 'INT8_X': True, 'WIDTH': width,
        'BLOCK_M': 16, 'BLOCK_N': 64, 'BLOCK_K': 64},
        attrs=runtime_attrs(_mixed_kernel, sig, INTS))
    return triton.compile(src, target=GPUTarget('cuda', 90, 32),
                          options={'num_warps': 4, 'num_stages': 2}).asm['ptx']


@pytest.mark.slow
def test_a_per_group_launch_compiles_its_width_alone():
    kinds = {width: {m.split('.')[-2] for m in MMA.findall(_ptx(width))} for width in (0, 4)}
    assert kinds[0] == {'f16', 's8'}  # the 16-bit group's float MMA beside the int8 ones
    assert kinds[4] == {'s8'}         # 4-bit rows only: int8 codes times int8 tokens
