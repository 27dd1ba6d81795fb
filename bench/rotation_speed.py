# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Online rotation + token rounding of a layer input on a GPU: fused kernel vs torch path.

    python bench/rotation_speed.py          # needs CUDA (run by bench/gpu_check.sh)

The torch path is what ``QuantizedLinear`` runs without the kernel: ``Rotation`` (signs, FWHT
levels, float32), the SmoothQuant scale, ``fake_quant_tokens``. Both are timed side by side
with CUDA events in one run, eager and from CUDA-graph replays, on the widths of a
Llama-2-7B layer input (4096; 11008 before ``down_proj``). Writes
bench/results/gpu-rotation-<device>.json; ratios are torch time / fused time.
"""

from pathlib import Path
import sys

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (cuda_bench_setup, time_cuda, time_cuda_graph,  # noqa: E402
                          write_json)
from qvla_ros.quant.activation import ActSpec, fake_quant_tokens  # noqa: E402
from qvla_ros.quant.rotation import Rotation  # noqa: E402

WIDTHS = (4096, 11008)
TOKENS = (1, 16, 600)
BITS = (4, 8)


def case(k: int, m: int, bits: int) -> dict:
    """Time one (K, M, bits) case, both paths on the same input; return its row."""
    from qvla_ros.kernels.triton_hadamard import rotate_quant_tokens
    rot = Rotation(k, seed=0).cuda()
    spec = ActSpec(bits, 0.9, 'hadamard')
    x = torch.randn(m, k, device='cuda', dtype=torch.bfloat16)
    inv = (torch.rand(k, device='cuda') + 0.5).half()

    def torch_path():
        return fake_quant_tokens(rot(x) * inv.to(x.dtype), spec)

    def fused():
        return rotate_quant_tokens(x, rot.signs(), rot.block, inv, bits, 0.9)

    ref = fake_quant_tokens(rot(x.float()) * inv.float(), spec)
    step = ref.abs().amax(-1, keepdim=True) * 0.9 / (2 ** (bits - 1) - 1)
    row = {'K': k, 'M': m, 'bits': bits, 'block': rot.block,
           'fused_max_err_steps': ((fused().float() - ref).abs() / step).max().item(),
           'torch_max_err_steps': ((torch_path().float() - ref).abs() / step).max().item()}
    for name, timer in (('', time_cuda), ('graph_', time_cuda_graph)):
        row[f'{name}torch_ms'] = timer(torch_path)
        row[f'{name}fused_ms'] = timer(fused)
        row[f'{name}speedup'] = row[f'{name}torch_ms'] / row[f'{name}fused_ms']
    return row


def main() -> int:
    """Run every case and write the results file."""
    setup = cuda_bench_setup(__doc__, 'gpu-rotation')
    if setup is None:
        return 2
    out, data = setup
    for k in WIDTHS:
        for m in TOKENS:
            for bits in BITS:
                data['cases'].append(case(k, m, bits))
                write_json(out, data)
                c = data['cases'][-1]
                print(f'K={k} M={m} A{bits}: torch {c["torch_ms"]:.3f} ms, fused '
                      f'{c["fused_ms"]:.3f} ms ({c["speedup"]:.2f}x; graphs '
                      f'{c["graph_speedup"]:.2f}x)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
