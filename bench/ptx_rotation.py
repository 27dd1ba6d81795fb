# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Registers, spills and shared memory of the fused rotation kernel, compiled on a CPU.

    python bench/ptx_rotation.py     # no GPU needed: triton's compiler and the ptxas it ships

Compiles ``qvla_ros.kernels.triton_hadamard`` for sm_90a (H100) and sm_87 (Jetson Orin) at
every tile shape its block orders use (bf16 inputs, A4 rounding, a SmoothQuant scale) with
the warps the wrapper launches and the specialization a launch gives (``runtime_attrs``),
and reads ``ptxas -v``. Writes
bench/results/ptx-rotation.json.
"""

import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import command_line, git_commit, RESULTS, write_json  # noqa: E402

TARGETS = ((90, 'sm_90a'), (87, 'sm_87'))
BLOCKS = (64, 256, 1024, 2048, 4096)
SIGNATURE = {'x_ptr': '*bf16', 'out_ptr': '*bf16', 's_ptr': '*i8', 'inv_ptr': '*fp16',
             'h1_ptr': '*fp32', 'h2_ptr': '*fp32', 'sc_ptr': '*fp32', 'K': 'i32', 'norm': 'fp32',
             'clip': 'fp32', 'qmax': 'fp32', 'R': 'constexpr', 'N1': 'constexpr',
             'KRON': 'constexpr',
             'HAS_INV': 'constexpr', 'QUANT': 'constexpr', 'CODES': 'constexpr'}


def ptxas_info(ptxas: str, ptx: str, arch: str) -> dict:
    """Return registers and spill bytes that ``ptxas -v`` reports for one PTX text."""
    with tempfile.NamedTemporaryFile('w', suffix='.ptx', delete=False) as f:
        f.write(ptx)
    try:
        err = subprocess.run([ptxas, '-v', f'--gpu-name={arch}', f.name, '-o', os.devnull],
                             capture_output=True, text=True, check=True).stderr
    finally:
        os.unlink(f.name)

    def number(pattern: str) -> int:
        found = re.search(pattern, err)
        return int(found.group(1)) if found else 0
    return {'registers': number(r'Used (\d+) registers'),
            'spill_store_bytes': number(r'(\d+) bytes spill stores'),
            'spill_load_bytes': number(r'(\d+) bytes spill loads')}


def runtime_attrs(fn, signature: dict, ints=()) -> dict:
    """Return the specialization a launch gives: 16-divisible pointers and ``ints``.

    Triton's JIT marks a pointer argument 16-byte aligned, and an int argument that it may
    specialize a multiple of 16, as ``tt.divisibility`` 16 (vector loads and stores hang on
    it); torch's allocations are aligned and the named ints are multiples of 16 in every
    model shape here, so the kernels are compiled as a launch compiles them.
    """
    return {(fn.arg_names.index(name),): [['tt.divisibility', 16]]
            for name, kind in signature.items() if kind.startswith('*') or name in ints}


def main() -> int:
    """Compile every case and write the results file."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from qvla_ros.kernels.triton_hadamard import _rotate_quant_kernel, factors, num_warps
    ptxas = os.path.join(os.path.dirname(triton.__file__), 'backends/nvidia/bin/ptxas')
    data = {'command': command_line(), 'commit': git_commit(), 'triton': triton.__version__,
            'cases': []}
    for block in BLOCKS:
        rows, n2, n1 = factors(block)
        src = ASTSource(fn=_rotate_quant_kernel, signature=SIGNATURE, constexprs={
            'R': rows, 'N1': n1, 'KRON': n2 > 1, 'HAS_INV': True, 'QUANT': True,
            'CODES': False}, attrs=runtime_attrs(_rotate_quant_kernel, SIGNATURE, ('K',)))
        for cap, arch in TARGETS:
            warps = num_warps(rows, n1)
            kernel = triton.compile(src, target=GPUTarget('cuda', cap, 32),
                                    options={'num_warps': warps})
            data['cases'].append({'block': block, 'tile': [rows, n1], 'arch': arch,
                                  'num_warps': warps, 'shared_bytes': kernel.metadata.shared,
                                  **ptxas_info(ptxas, kernel.asm['ptx'], arch)})
    write_json(RESULTS / 'ptx-rotation.json', data)
    return 0


if __name__ == '__main__':
    sys.exit(main())
