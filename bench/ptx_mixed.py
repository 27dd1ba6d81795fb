# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The fused mixed-bit kernel compiled on a CPU: float tokens against int8 tokens (W4A8).

    python bench/ptx_mixed.py     # no GPU needed: triton's compiler and the ptxas it ships

Compiles ``qvla_ros.kernels.triton_mixed._mixed_kernel`` at every autotuning tile
(``_configs``) for sm_90a (H100) and sm_87 (Jetson Orin), with fp16 tokens and with int8
tokens (per-row scales, bias, specialized as a launch on a Llama-shaped layer is), as the
single launch for all bit groups (``width`` 0) and as each group's own launch (``width`` 16,
8, 4, 3, 2: what ``mixed_linear`` runs by default), and records the tensor-core instructions
in its PTX (int8 tokens must reach ``.s8`` MMAs), its global loads and stores by width, and
the registers, spills and shared memory ``ptxas -v`` reports. Writes
bench/results/ptx-mixed.json.
"""

from collections import Counter
import itertools
import os
from pathlib import Path
import re
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import command_line, git_commit, RESULTS, write_json  # noqa: E402
from bench.ptx_rotation import ptxas_info, runtime_attrs, TARGETS  # noqa: E402
from qvla_ros.kernels.format import GROUP_BITS, KERNEL_SIZES  # noqa: E402

CONSTEXPRS = ('HAS_BIAS', 'PER_ROW', 'INT8_X', 'WIDTH', 'BLOCK_M', 'BLOCK_N', 'BLOCK_K')
WIDTHS = (0, *GROUP_BITS)  # 0: one launch for every group
INTS = ('K', 'stride_xm', 'stride_om')  # the ints the kernel lets the JIT specialize
MMA = re.compile(r'(wgmma\.mma_async[.\w]*|mma\.sync[.\w]*)')
# global loads and stores, and the asynchronous copies that stage tensor-core operands
GLOBAL_OPS = re.compile(r'\b((?:ld|st)\.global[.\w]*|cp\.async\.c[ag]\.shared\.global)')


def signature(tokens: str) -> dict:
    """Return the kernel's argument types with ``tokens`` ('fp16' or 'i8') as x."""
    sig = {'x_ptr': f'*{tokens}', 'out_ptr': '*fp16', 'w16_ptr': '*fp16', 'qw_ptr': '*i32',
           's_ptr': '*fp16', 'z_ptr': '*fp16', 'perm_ptr': '*i32', 'bias_ptr': '*fp16',
           'xs_ptr': '*fp32'}
    sig.update({name: 'i32' for name in ('M', 'K', 'G', 'GS', 'stride_xm', 'stride_om',
                                         *KERNEL_SIZES, 'N_OUT')})
    sig.update({name: 'constexpr' for name in CONSTEXPRS})
    return sig


def main() -> int:
    """Compile every case and write the results file."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from qvla_ros.kernels.triton_mixed import _configs, _mixed_kernel
    ptxas = os.path.join(os.path.dirname(triton.__file__), 'backends/nvidia/bin/ptxas')
    data = {'command': command_line(), 'commit': git_commit(), 'triton': triton.__version__,
            'cases': []}
    for config in _configs():
        tile = [config.kwargs[k] for k in ('BLOCK_M', 'BLOCK_N', 'BLOCK_K')]
        for tokens, width in itertools.product(('fp16', 'i8'), WIDTHS):
            src = ASTSource(fn=_mixed_kernel, signature=signature(tokens), constexprs={
                'HAS_BIAS': True, 'PER_ROW': True, 'INT8_X': tokens == 'i8', 'WIDTH': width,
                **config.kwargs}, attrs=runtime_attrs(_mixed_kernel, signature(tokens), INTS))
            for cap, arch in TARGETS:
                kernel = triton.compile(src, target=GPUTarget('cuda', cap, 32), options={
                    'num_warps': config.num_warps, 'num_stages': config.num_stages})
                ptx = kernel.asm['ptx']
                data['cases'].append({
                    'tile': tile, 'num_warps': config.num_warps,
                    'num_stages': config.num_stages, 'tokens': tokens, 'width': width,
                    'arch': arch,
                    'mma': sorted({m.split('.sync.aligned.')[-1] for m in MMA.findall(ptx)}),
                    'global_ops': dict(sorted(Counter(GLOBAL_OPS.findall(ptx)).items())),
                    'shared_bytes': kernel.metadata.shared, **ptxas_info(ptxas, ptx, arch)})
            write_json(RESULTS / 'ptx-mixed.json', data)
    return 0


if __name__ == '__main__':
    sys.exit(main())
