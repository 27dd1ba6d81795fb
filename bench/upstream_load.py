# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Peak memory of loading an upstream-layout OpenVLA-OFT folder (upstream_load.json).

Writes a bf16 folder laid out as the Hub's (three ``model-0000k-of-00003.safetensors`` shards
and their index, a partial ``text_config``, OFT head and proprio parts as ``.pt``) with a
reduced Llama (``--hidden``, ``--layers``) of at least ``--min-gb`` GB, then loads it with
``load_policy`` in a fresh process and reads the process's peak RSS (``VmHWM``) after loading
and again after reading every weight once (safetensors tensors are memory-mapped: their pages
count once touched). The heavy imports are made first, so ``peak - baseline`` is what loading
costs; the goal is at most 1.3x the checkpoint's bytes (a robot PC must hold the 7B's 15 GB,
not a float32 copy).

    python bench/upstream_load.py              # writes bench/results/upstream_load.json
"""

import argparse
import json
import math
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          write_json)

VOCAB, PATCH, IMG = 32064, 14, 224

MEASURE = '''
import json, sys, time
from pathlib import Path
def rss(key):
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import torch, transformers
from transformers import (AutoTokenizer, Dinov2WithRegistersModel, LlamaModel,
                          SiglipVisionModel)
from qvla_ros.models.checkpoint import load_policy
import qvla_ros.models.openvla_loader
torch.set_num_threads(2)
base = rss('VmRSS:')
t0 = time.perf_counter()
policy = load_policy(sys.argv[1], *sys.argv[2:])
seconds = time.perf_counter() - t0
loaded = rss('VmHWM:')
state = policy.state_dict()
params = sum(p.numel() * p.element_size() for p in state.values())
for p in state.values():  # read every weight once: memory-mapped pages count from here on
    p.sum()
print(json.dumps({'baseline_rss': base, 'peak_rss_after_load': loaded,
                  'peak_rss': rss('VmHWM:'), 'end_rss': rss('VmRSS:'), 'seconds': seconds,
                  'model_bytes': params, 'dtype': str(next(policy.parameters()).dtype)}))
'''


def _tower(dim, mlp, depth, registers, gen, dtype):
    import torch
    s = {'patch_embed.proj.weight': torch.randn(dim, 3, PATCH, PATCH, generator=gen) * 0.02,
         'patch_embed.proj.bias': torch.zeros(dim),
         'pos_embed': torch.randn(1, (IMG // PATCH) ** 2, dim, generator=gen) * 0.02,
         'norm.weight': torch.ones(dim), 'norm.bias': torch.zeros(dim)}
    if registers:
        s['cls_token'] = torch.zeros(1, 1, dim)
        s['reg_token'] = torch.zeros(1, registers, dim)
    for i in range(depth):
        b = f'blocks.{i}.'
        for name in ('norm1', 'norm2'):
            s[b + name + '.weight'], s[b + name + '.bias'] = torch.ones(dim), torch.zeros(dim)
        for name, (o, k) in (('attn.qkv', (3 * dim, dim)), ('attn.proj', (dim, dim)),
                             ('mlp.fc1', (mlp, dim)), ('mlp.fc2', (dim, mlp))):
            s[b + name + '.weight'] = torch.randn(o, k, generator=gen) / math.sqrt(k)
            s[b + name + '.bias'] = torch.zeros(o)
        if registers:
            s[b + 'ls1.scale_factor'] = torch.ones(dim)
            s[b + 'ls2.scale_factor'] = torch.ones(dim)
    return {k: v.to(dtype) for k, v in s.items()}


def write_folder(folder: Path, hidden: int, layers: int, mlp: int, seed: int = 0) -> int:
    """Write the folder one shard at a time; return the bytes of its weight files."""
    import torch
    from safetensors.torch import save_file
    gen, dtype = torch.Generator().manual_seed(seed), torch.bfloat16
    folder.mkdir(parents=True)
    shards = [{}, {}, {}]
    shards[0].update({f'vision_backbone.featurizer.{k}': v
                      for k, v in _tower(256, 1024, 4, 4, gen, dtype).items()})
    shards[0].update({f'vision_backbone.fused_featurizer.{k}': v
                      for k, v in _tower(256, 1024, 4, 0, gen, dtype).items()})
    vdim = 512
    for name, (o, k) in (('fc1', (4 * vdim, vdim)), ('fc2', (hidden, 4 * vdim)),
                         ('fc3', (hidden, hidden))):
        shards[0][f'projector.{name}.weight'] = (torch.randn(o, k, generator=gen)
                                                 / math.sqrt(k)).to(dtype)
        shards[0][f'projector.{name}.bias'] = torch.zeros(o, dtype=dtype)
    lm = 'language_model.model.'
    shards[0][lm + 'embed_tokens.weight'] = torch.randn(VOCAB, hidden, generator=gen).to(dtype)
    weight_map, total = {}, 0
    for k in range(3):
        part = shards[k]
        for i in range(layers * k // 3, layers * (k + 1) // 3):
            b = f'{lm}layers.{i}.'
            for name, (o, kk) in (('self_attn.q_proj', (hidden, hidden)),
                                  ('self_attn.k_proj', (hidden, hidden)),
                                  ('self_attn.v_proj', (hidden, hidden)),
                                  ('self_attn.o_proj', (hidden, hidden)),
                                  ('mlp.gate_proj', (mlp, hidden)), ('mlp.up_proj', (mlp, hidden)),
                                  ('mlp.down_proj', (hidden, mlp))):
                part[b + name + '.weight'] = (torch.randn(o, kk, generator=gen)
                                              / math.sqrt(kk)).to(dtype)
            part[b + 'input_layernorm.weight'] = torch.ones(hidden, dtype=dtype)
            part[b + 'post_attention_layernorm.weight'] = torch.ones(hidden, dtype=dtype)
        if k == 2:
            part[lm + 'norm.weight'] = torch.ones(hidden, dtype=dtype)
            part['language_model.lm_head.weight'] = torch.randn(VOCAB, hidden,
                                                                generator=gen).to(dtype)
        file = f'model-{k + 1:05d}-of-00003.safetensors'
        save_file(part, str(folder / file), metadata={'format': 'pt'})
        weight_map.update({n: file for n in part})
        total += (folder / file).stat().st_size
        shards[k] = None  # free the shard before making the next
    (folder / 'model.safetensors.index.json').write_text(json.dumps(
        {'metadata': {'total_size': total}, 'weight_map': weight_map}))
    head = {'module.model.fc1.weight': torch.randn(512, 7 * hidden, generator=gen).to(dtype)}
    for name, n in (('fc1', 512), ('fc2', 7)):
        head.setdefault(f'module.model.{name}.weight', torch.randn(n, 512, generator=gen
                                                                   ).to(dtype))
        head[f'module.model.{name}.bias'] = torch.zeros(n, dtype=dtype)
    for b in range(2):
        head[f'module.model.mlp_resnet_blocks.{b}.ffn.0.weight'] = torch.ones(512, dtype=dtype)
        head[f'module.model.mlp_resnet_blocks.{b}.ffn.0.bias'] = torch.zeros(512, dtype=dtype)
        head[f'module.model.mlp_resnet_blocks.{b}.ffn.1.weight'] = torch.randn(
            512, 512, generator=gen).to(dtype) / 23
        head[f'module.model.mlp_resnet_blocks.{b}.ffn.1.bias'] = torch.zeros(512, dtype=dtype)
    for name, n in (('layer_norm1', 7 * hidden), ('layer_norm2', 512)):
        head[f'module.model.{name}.weight'] = torch.ones(n, dtype=dtype)
        head[f'module.model.{name}.bias'] = torch.zeros(n, dtype=dtype)
    torch.save(head, folder / 'action_head--150000_checkpoint.pt')
    total += (folder / 'action_head--150000_checkpoint.pt').stat().st_size
    _metadata(folder, hidden, layers, mlp)
    return total


def _metadata(folder: Path, hidden: int, layers: int, mlp: int) -> None:
    stats = {'libero_spatial_no_noops': {'action': {
        'q01': [-1.0] * 6 + [0.0], 'q99': [1.0] * 6 + [1.0], 'mask': [True] * 6 + [False]}}}
    config = {'architectures': ['OpenVLAForActionPrediction'], 'model_type': 'openvla',
              'image_sizes': [IMG, IMG], 'n_action_bins': 256, 'norm_stats': stats,
              'timm_model_ids': ['vit_large_patch14_reg4_dinov2.lvd142m',
                                 'vit_so400m_patch14_siglip_224'],
              'timm_override_act_layers': [None, None], 'torch_dtype': 'bfloat16',
              'use_fused_vision_backbone': True, 'vision_backbone_id': 'dinosiglip-vit-so-224px',
              'text_config': {'hidden_size': hidden, 'intermediate_size': mlp,
                              'model_type': 'llama', 'num_attention_heads': 16,
                              'num_hidden_layers': layers, 'num_key_value_heads': 16,
                              'pad_token_id': 32000, 'torch_dtype': 'bfloat16',
                              'vocab_size': VOCAB}}
    (folder / 'config.json').write_text(json.dumps(config))
    (folder / 'dataset_statistics.json').write_text(json.dumps(stats))
    from tokenizers import models, Tokenizer
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel({'<unk>': 0, '<s>': 1, '</s>': 2}, unk_token='<unk>'))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<s>', eos_token='</s>',
                            unk_token='<unk>').save_pretrained(str(folder))


def measure(folder: Path) -> dict:
    """Load ``folder`` in a fresh process; return its memory figures."""
    run = subprocess.run([sys.executable, '-c', MEASURE, str(folder)], capture_output=True,
                         text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def measure_at(commit: str, folder: Path, key: str) -> dict:
    """Measure the loader of an older ``commit`` (a git worktree) on the same folder.

    Loaders before the upstream options took the norm-stats key as their second argument.
    """
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix='qvla-baseline-') as tmp:
        tree = Path(tmp) / 'tree'
        subprocess.run(['git', '-C', str(repo), 'worktree', 'add', '--detach', str(tree),
                        commit], check=True, capture_output=True)
        try:
            run = subprocess.run([sys.executable, '-c', MEASURE, str(folder), key],
                                 capture_output=True, text=True, check=True, cwd=tree,
                                 env={**os.environ, 'PYTHONPATH': str(tree)})
        finally:
            subprocess.run(['git', '-C', str(repo), 'worktree', 'remove', '--force',
                            str(tree)], check=True, capture_output=True)
    return {**json.loads(run.stdout.strip().splitlines()[-1]), 'commit': commit}


def main(argv=None) -> int:
    """Write the folder, measure, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hidden', type=int, default=2048)
    parser.add_argument('--layers', type=int, default=12)
    parser.add_argument('--mlp', type=int, default=5504)
    parser.add_argument('--baseline-commit', help='also measure the loader of this commit')
    parser.add_argument('--out', default=str(RESULTS / 'upstream_load.json'))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='qvla-upstream-') as tmp:
        folder = Path(tmp) / 'openvla-oft-reduced'
        t0 = time.perf_counter()
        nbytes = write_folder(folder, args.hidden, args.layers, args.mlp)
        written = time.perf_counter() - t0
        m = measure(folder)
        base = measure_at(args.baseline_commit, folder, 'libero_spatial_no_noops') \
            if args.baseline_commit else None
    loading = m['peak_rss'] - m['baseline_rss']
    result = {**m, 'checkpoint_bytes': nbytes, 'write_seconds': written,
              'load_over_checkpoint': loading / nbytes,
              'peak_over_checkpoint': m['peak_rss'] / nbytes, 'goal': 1.3,
              'llm': {'hidden': args.hidden, 'layers': args.layers, 'mlp': args.mlp},
              'device': device_name(), 'commit': git_commit(),
              'command': 'python ' + command_line()}
    if base:
        base['load_over_checkpoint'] = (base['peak_rss'] - base['baseline_rss']) / nbytes
        result['baseline_loader'] = base
    write_json(Path(args.out), result)
    print(f'checkpoint {nbytes / 1e9:.2f} GB; loading and reading every weight raised RSS by '
          f'{loading / 1e9:.2f} GB ({result["load_over_checkpoint"]:.2f}x; goal <= 1.3x); '
          f'peak RSS {m["peak_rss"] / 1e9:.2f} GB, of which {m["baseline_rss"] / 1e9:.2f} GB '
          f'before loading (Python, torch, transformers); load {m["seconds"]:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
