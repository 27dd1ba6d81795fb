# Copyright 2026 qvla_ros authors. Apache-2.0.
"""A W4A8 layer on a GPU: int8 tokens on int8 tensor cores vs fake-quantized tokens vs bf16.

    python bench/w4a8_speed.py          # needs CUDA (run by bench/gpu_check.sh)

One Llama-2-7B-shaped layer, QVLA-like 4.0 bits per weight (``MIXES['qvla4.0']``), behind
the ``QuantizedLinear`` that rounds its input per token at 8 bits. Timed side by side with
CUDA events in one run, eager and from CUDA-graph replays:

* ``bf16``: dense bf16 ``F.linear`` (cuBLAS) on the unrounded tokens;
* ``w4a16``: the packed layer on bf16 tokens (no activation rounding);
* ``w4a8_fake``: ``fake_quant_tokens`` then the packed layer on bf16 tokens (the path before
  the int8 one: the rounding costs time and buys nothing);
* ``w4a8_int8``: ``token_codes`` then the int8-token kernel (what ``QuantizedLinear`` runs).

Writes bench/results/gpu-w4a8-<device>.json; ratios are other time / w4a8_int8 time.
"""

from pathlib import Path
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (bits_for_mix, cuda_bench_setup, MIXES, time_cuda,  # noqa: E402
                          time_cuda_graph, write_json)
from qvla_ros.kernels.format import PackedLayout, reference_linear  # noqa: E402
from qvla_ros.kernels.linear import MixedBitLinear  # noqa: E402
from qvla_ros.quant.activation import ActSpec, fake_quant_tokens  # noqa: E402
from qvla_ros.quant.apply import QuantizedLinear  # noqa: E402

SHAPES = (('llama2-7b.gate_up', 11008, 4096), ('llama2-7b.down', 4096, 11008))
TOKENS = (1, 16, 600)
PATHS = ('bf16', 'w4a16', 'w4a8_fake', 'w4a8_int8')


def case(name: str, n: int, k: int, m: int) -> dict:
    """Time the four paths of one (shape, M) case on the same input; return its row."""
    w = torch.randn(n, k, device='cuda') * 0.02
    bias = torch.randn(n, device='cuda') * 0.01
    layout = PackedLayout.from_float(w, bits_for_mix(n, MIXES['qvla4.0']), bias=bias,
                                     dense_dtype=torch.bfloat16)
    inner = MixedBitLinear(layout)
    spec = ActSpec(8)
    layer = QuantizedLinear(inner, act=spec).cuda()
    x = torch.randn(m, k, device='cuda', dtype=torch.bfloat16)
    wb, bb = w.bfloat16(), bias.bfloat16()
    paths = {'bf16': lambda: F.linear(x, wb, bb), 'w4a16': lambda: inner(x),
             'w4a8_fake': lambda: inner(fake_quant_tokens(x, spec)), 'w4a8_int8': lambda: layer(x)}
    ref = reference_linear(fake_quant_tokens(x.float(), spec), layout)
    row = {'shape': name, 'N': n, 'K': k, 'M': m, 'int8_path': layer.int8_tokens(x),
           'w4a8_int8_max_rel_err': ((layer(x).float() - ref).abs().max()
                                     / ref.abs().max()).item(),
           'w4a8_fake_max_rel_err': ((paths['w4a8_fake']().float() - ref).abs().max()
                                     / ref.abs().max()).item()}
    for prefix, timer in (('', time_cuda), ('graph_', time_cuda_graph)):
        for path in PATHS:
            row[f'{prefix}{path}_ms'] = timer(paths[path])
        for path in PATHS[:-1]:
            row[f'{prefix}{path}_over_int8'] = (row[f'{prefix}{path}_ms']
                                                / row[f'{prefix}w4a8_int8_ms'])
    return row


def main() -> int:
    """Run every case and write the results file."""
    setup = cuda_bench_setup(__doc__, 'gpu-w4a8', mix='qvla4.0', act_bits=8)
    if setup is None:
        return 2
    out, data = setup
    for name, n, k in SHAPES:
        for m in TOKENS:
            data['cases'].append(case(name, n, k, m))
            write_json(out, data)
            c = data['cases'][-1]
            print(f'{name} M={m}: bf16 {c["bf16_ms"]:.3f} ms, w4a16 {c["w4a16_ms"]:.3f}, '
                  f'w4a8 fake {c["w4a8_fake_ms"]:.3f}, int8 {c["w4a8_int8_ms"]:.3f} '
                  f'(graphs: bf16 / int8 {c["graph_bf16_over_int8"]:.2f}x)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
