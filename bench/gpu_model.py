# Copyright 2026 qvla_ros authors. Apache-2.0.
"""An OpenVLA-OFT-shaped LLM (Llama-2-7B dims, 600-token forward): bf16 vs QVLA-like 4.0 bits.

Random weights: this measures latency (CUDA events, after warm-up) and peak VRAM
(torch.cuda.max_memory_allocated), not accuracy. Every decoder linear (q, k, v, o, gate, up,
down) becomes a MixedBitLinear with 20 % 8-bit, 45 % 4-bit, 30 % 2-bit and 5 % pruned rows;
embeddings and norms stay bf16, as in QVLA.

    python bench/gpu_model.py --out bench/results/gpu-model-<device>.json [--graph]

Also times a --decode-tokens (default 1) forward: the M = 1 regime of autoregressive decoding.
"""

import argparse
from pathlib import Path
import sys
import time

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (bits_for_mix, device_name, git_commit, MIXES,  # noqa: E402
                          time_cuda, time_cuda_graph, write_json)
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


def measure_graph(model, ids) -> dict:
    """Return the CUDA-graph-replayed latency of one forward (no launch overhead)."""
    def forward():
        with torch.no_grad():
            return model(input_ids=ids, use_cache=False).last_hidden_state
    try:
        return {'graph_latency_ms': time_cuda_graph(forward, calls=1, reps=10)}
    except RuntimeError as err:  # HF forwards are not always capturable; record why
        return {'graph_error': str(err)[:300]}


def measure(model, ids) -> dict:
    """Return latency and peak memory of one forward over ``ids``."""
    def forward():
        with torch.no_grad():
            return model(input_ids=ids, use_cache=False).last_hidden_state
    forward()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    forward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {'latency_ms': time_cuda(forward, warmup=3, reps=10), 'peak_bytes': peak,
            'resident_bytes': base}


def _graph_speedups(bf16: dict, quant: dict) -> dict:
    out = {}
    for name, a, b in (('graph_speedup', bf16, quant),
                       ('decode_graph_speedup', bf16.get('decode', {}),
                        quant.get('decode', {}))):
        if 'graph_latency_ms' in a and 'graph_latency_ms' in b:
            out[name] = a['graph_latency_ms'] / b['graph_latency_ms']
    return out


def main(argv=None) -> int:
    """Run both variants and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--layers', type=int, default=32)
    parser.add_argument('--tokens', type=int, default=600)
    parser.add_argument('--decode-tokens', type=int, default=1,
                        help='also time a forward over this many tokens (0: skip)')
    parser.add_argument('--graph', action='store_true',
                        help='also time CUDA-graph replays (after every eager number)')
    parser.add_argument('--mix', default='qvla4.0', choices=sorted(MIXES))
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.monotonic()
    model = build(args.layers)
    ids = torch.randint(0, 32000, (1, args.tokens), device='cuda')
    short = ids[:, :args.decode_tokens]
    bf16 = measure(model, ids)
    if args.decode_tokens:
        bf16['decode'] = measure(model, short)
    with torch.no_grad():
        ref = model(input_ids=ids).last_hidden_state.float()
    if args.graph:
        bf16.update(measure_graph(model, ids))
        if args.decode_tokens:
            bf16['decode'].update(measure_graph(model, short))
    stats = quantize_(model, args.mix)
    quant = measure(model, ids)
    if args.decode_tokens:
        quant['decode'] = measure(model, short)
    with torch.no_grad():
        out = model(input_ids=ids).last_hidden_state.float()
    if args.graph:
        quant.update(measure_graph(model, ids))
        if args.decode_tokens:
            quant['decode'].update(measure_graph(model, short))
    result = {
        'device': device_name(), 'commit': git_commit(), 'torch': torch.__version__,
        'layers': args.layers, 'tokens': args.tokens, 'mix': args.mix,
        'avg_bits_per_param': float(bits_for_mix(4096, MIXES[args.mix]).float().mean()),
        'bf16': bf16, 'quantized': quant, **stats,
        'peak_ratio': quant['peak_bytes'] / bf16['peak_bytes'],
        'resident_ratio': quant['resident_bytes'] / bf16['resident_bytes'],
        'speedup': bf16['latency_ms'] / quant['latency_ms'],
        'hidden_rel_diff_vs_bf16': ((out - ref).norm() / ref.norm()).item(),
        'decode_tokens': args.decode_tokens,
        'decode_speedup': (bf16['decode']['latency_ms'] / quant['decode']['latency_ms']
                           if args.decode_tokens else None),
        **_graph_speedups(bf16, quant),
        'wall_s': time.monotonic() - t0,
        'command': ' '.join(sys.argv)}
    write_json(Path(args.out), result)
    print({k: v for k, v in result.items() if not isinstance(v, dict)})
    return 0


if __name__ == '__main__':
    sys.exit(main())
