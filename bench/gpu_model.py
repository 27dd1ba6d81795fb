# Copyright 2026 qvla_ros authors. Apache-2.0.
"""An OpenVLA-OFT-shaped LLM (Llama-2-7B dims, 600-token forward): bf16 vs QVLA-like 4.0 bits.

Random weights: this measures latency (CUDA events, after warm-up) and peak VRAM
(torch.cuda.max_memory_allocated), not accuracy. Every decoder linear (q, k, v, o, gate, up,
down) becomes a MixedBitLinear with 20 % 8-bit, 45 % 4-bit, 30 % 2-bit and 5 % pruned rows;
embeddings and norms stay bf16, as in QVLA.

    python bench/gpu_model.py --out bench/results/gpu-model-<device>.json
"""

import argparse
from pathlib import Path
import sys
import time

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (bits_for_mix, device_name, git_commit, MIXES,  # noqa: E402
                          time_cuda, write_json)
from qvla_ros.kernels.linear import MixedBitLinear  # noqa: E402

LINEARS = ('self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
           'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj')


def build(layers: int):
    """Return a random-init bf16 LlamaModel with Llama-2-7B dimensions on CUDA."""
    from transformers import LlamaConfig, LlamaModel
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
                      max_position_embeddings=2048)
    cfg._attn_implementation = 'sdpa'
    torch.set_default_dtype(torch.bfloat16)
    with torch.device('cuda'):
        model = LlamaModel(cfg)
    torch.set_default_dtype(torch.float32)
    return model.eval()


def quantize_(model, mix: str) -> dict:
    """Replace every decoder linear with a packed MixedBitLinear, in place; return stats."""
    params, packed = 0, 0
    for i, layer in enumerate(model.layers):
        for j, path in enumerate(LINEARS):
            parent_name, name = path.split('.')
            parent = getattr(layer, parent_name)
            lin = getattr(parent, name)
            bits = bits_for_mix(lin.out_features, MIXES[mix], seed=1000 * i + j)
            q = MixedBitLinear.from_float(lin, bits, dense_dtype=torch.bfloat16)
            params += lin.weight.numel()
            packed += q.packed_bytes()
            setattr(parent, name, q)
            del lin
        torch.cuda.empty_cache()
    return {'quantized_params': params, 'packed_bytes': packed,
            'bf16_bytes_of_those': 2 * params}


def measure(model, ids) -> dict:
    """Return latency and peak memory of one forward over ``ids``."""
    def forward():
        with torch.no_grad():
            return model(input_ids=ids).last_hidden_state
    forward()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    forward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {'latency_ms': time_cuda(forward, warmup=3, reps=10), 'peak_bytes': peak,
            'resident_bytes': base}


def main(argv=None) -> int:
    """Run both variants and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--layers', type=int, default=32)
    parser.add_argument('--tokens', type=int, default=600)
    parser.add_argument('--mix', default='qvla4.0', choices=sorted(MIXES))
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.monotonic()
    model = build(args.layers)
    ids = torch.randint(0, 32000, (1, args.tokens), device='cuda')
    bf16 = measure(model, ids)
    with torch.no_grad():
        ref = model(input_ids=ids).last_hidden_state.float()
    stats = quantize_(model, args.mix)
    quant = measure(model, ids)
    with torch.no_grad():
        out = model(input_ids=ids).last_hidden_state.float()
    result = {
        'device': device_name(), 'commit': git_commit(), 'torch': torch.__version__,
        'layers': args.layers, 'tokens': args.tokens, 'mix': args.mix,
        'avg_bits_per_param': float(bits_for_mix(4096, MIXES[args.mix]).float().mean()),
        'bf16': bf16, 'quantized': quant, **stats,
        'peak_ratio': quant['peak_bytes'] / bf16['peak_bytes'],
        'resident_ratio': quant['resident_bytes'] / bf16['resident_bytes'],
        'speedup': bf16['latency_ms'] / quant['latency_ms'],
        'hidden_rel_diff_vs_bf16': ((out - ref).norm() / ref.norm()).item(),
        'wall_s': time.monotonic() - t0,
        'command': ' '.join(sys.argv)}
    write_json(Path(args.out), result)
    print({k: v for k, v in result.items() if not isinstance(v, dict)})
    return 0


if __name__ == '__main__':
    sys.exit(main())
