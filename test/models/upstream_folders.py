# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Upstream OpenVLA / OFT folders written as the Hub has them, and a reference forward.

The writer reproduces what upstream's ``save_pretrained`` and OFT's ``finetune.py`` leave on
disk, with a reduced LLM: a ``config.json`` holding only non-default fields (``text_config``
without rms eps, rope theta or max positions), ``model-0000k-of-0000N.safetensors`` shards and
their index, timm-named towers with the SigLIP ``attn_pool.*`` head, OFT parts saved with
``torch.save`` under DDP's ``module.`` prefix, FiLM's whole vision backbone with PEFT LoRA
layers, a LIBERO-style ``dataset_statistics.json`` and a Llama-style tokenizer.

The reference forward is written here from upstream's semantics only (timm blocks, Llama with
RoPE, OFT's bidirectional attention, zeroed placeholders, the hidden-state slice, FiLM's
modulation, PEFT's LoRA forward, the unnormalization formulas), sharing no code with the
package.
"""

import json
import math

import numpy as np
from safetensors.torch import save_file
import torch
import torch.nn.functional as F

DINO_ID, SIGLIP_ID = 'vit_large_patch14_reg4_dinov2.lvd142m', 'vit_so400m_patch14_siglip_224'
IMG, PATCH, DEPTH = 28, 14, 3
VOCAB, PAD, D, LAYERS, HEADS, MLP = 32064, 64, 32, 2, 4, 64
TOWER_DIMS = ((32, 64, 4), (48, 80, 0))  # (dim, mlp, registers): DINOv2-reg4, SigLIP
LORA_RANK = 8
WORDS = ['in:', 'what', 'action', 'should', 'the', 'robot', 'take', 'to', 'out:', 'push',
         'red', 'block', 'left', 'pick', 'up', 'cup?', 'left?', 'cup']
EMPTY, STOP = 29871, 2


def _vit(gen, dim, mlp, registers, attn_pool):
    s = {'patch_embed.proj.weight': torch.randn(dim, 3, PATCH, PATCH, generator=gen) * 0.05,
         'patch_embed.proj.bias': torch.randn(dim, generator=gen) * 0.02,
         'pos_embed': torch.randn(1, (IMG // PATCH) ** 2, dim, generator=gen) * 0.1,
         'norm.weight': torch.ones(dim), 'norm.bias': torch.zeros(dim)}
    if registers:
        s['cls_token'] = torch.randn(1, 1, dim, generator=gen)
        s['reg_token'] = torch.randn(1, registers, dim, generator=gen)
    for i in range(DEPTH):
        b = f'blocks.{i}.'
        for name in ('norm1', 'norm2'):
            s[b + name + '.weight'] = 1 + 0.1 * torch.randn(dim, generator=gen)
            s[b + name + '.bias'] = 0.1 * torch.randn(dim, generator=gen)
        for name, (o, i_) in (('attn.qkv', (3 * dim, dim)), ('attn.proj', (dim, dim)),
                              ('mlp.fc1', (mlp, dim)), ('mlp.fc2', (dim, mlp))):
            s[b + name + '.weight'] = torch.randn(o, i_, generator=gen) / math.sqrt(i_)
            s[b + name + '.bias'] = 0.05 * torch.randn(o, generator=gen)
        if registers:
            s[b + 'ls1.scale_factor'] = 0.5 + torch.rand(dim, generator=gen)
            s[b + 'ls2.scale_factor'] = 0.5 + torch.rand(dim, generator=gen)
    if attn_pool:  # timm AttentionPoolLatent: the SigLIP head OpenVLA never runs
        s['attn_pool.latent'] = torch.randn(1, 1, dim, generator=gen)
        for name, (o, i_) in (('q', (dim, dim)), ('kv', (2 * dim, dim)), ('proj', (dim, dim)),
                              ('mlp.fc1', (mlp, dim)), ('mlp.fc2', (dim, mlp))):
            s[f'attn_pool.{name}.weight'] = torch.randn(o, i_, generator=gen)
            s[f'attn_pool.{name}.bias'] = torch.randn(o, generator=gen)
        s['attn_pool.norm.weight'], s['attn_pool.norm.bias'] = torch.ones(dim), torch.zeros(dim)
    return s


def tokenizer_files(folder):
    """Write a word-level Llama-style tokenizer (BOS prepended, </s> = 2)."""
    from tokenizers import models, pre_tokenizers, processors, Tokenizer
    from transformers import PreTrainedTokenizerFast
    vocab = {'<unk>': 0, '<s>': 1, '</s>': 2, **{w: 3 + i for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single='<s> $A', special_tokens=[
        ('<s>', 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<s>', eos_token='</s>',
                            unk_token='<unk>').save_pretrained(str(folder))


def hub_config(norm_stats):
    """config.json as upstream save_pretrained writes it (non-default fields only)."""
    return {
        'arch_specifier': 'no-align+fused-gelu-mlp',
        'architectures': ['OpenVLAForActionPrediction'],
        'auto_map': {'AutoConfig': 'configuration_prismatic.OpenVLAConfig',
                     'AutoModelForVision2Seq': 'modeling_prismatic.OpenVLAForActionPrediction'},
        'hf_llm_id': 'meta-llama/Llama-2-7b-hf', 'image_resize_strategy': 'resize-naive',
        'image_sizes': [IMG, IMG], 'llm_backbone_id': 'llama2-7b-pure', 'llm_max_length': 2048,
        'model_type': 'openvla', 'n_action_bins': 256, 'norm_stats': norm_stats,
        'output_projector_states': False, 'pad_to_multiple_of': PAD, 'pad_token_id': 32000,
        'text_config': {'hidden_size': D, 'intermediate_size': MLP, 'model_type': 'llama',
                        'num_attention_heads': HEADS, 'num_hidden_layers': LAYERS,
                        'num_key_value_heads': HEADS, 'pad_token_id': 32000,
                        'torch_dtype': 'bfloat16', 'vocab_size': VOCAB},
        'timm_model_ids': [DINO_ID, SIGLIP_ID], 'timm_override_act_layers': [None, None],
        'torch_dtype': 'bfloat16', 'transformers_version': '4.40.1',
        'use_fused_vision_backbone': True, 'vision_backbone_id': 'dinosiglip-vit-so-224px'}


def _stats(low, high, mask):
    n = len(low)
    return {'mean': [0.0] * n, 'std': [1.0] * n, 'max': [h + 0.25 for h in high],
            'min': [v - 0.25 for v in low], 'q01': low, 'q99': high, 'mask': mask}


def dataset_statistics(key):
    """A dataset_statistics.json entry as OFT's RLDS pipeline writes it."""
    action = _stats([-0.5] * 6 + [0.0], [0.5] * 6 + [1.0], [True] * 6 + [False])
    proprio = _stats([-1.0] * 7 + [0.0], [1.0] * 7 + [0.04], [True] * 7 + [False])
    return {key: {'action': action, 'proprio': proprio, 'num_transitions': 1000,
                  'num_trajectories': 20}}


def _save_shards(state, folder, shards, dtype):
    names = sorted(state)
    size = math.ceil(len(names) / shards)
    weight_map, total = {}, 0
    for k in range(shards):
        file = f'model-{k + 1:05d}-of-{shards:05d}.safetensors'
        part = {n: state[n].to(dtype).contiguous() for n in names[k * size:(k + 1) * size]}
        save_file(part, str(folder / file), metadata={'format': 'pt'})
        weight_map.update({n: file for n in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
    (folder / 'model.safetensors.index.json').write_text(json.dumps(
        {'metadata': {'total_size': total}, 'weight_map': weight_map}, indent=2))


def _linear(gen, o, i):
    return torch.randn(o, i, generator=gen) / math.sqrt(i), 0.05 * torch.randn(o, generator=gen)


def _oft_parts(gen, head_scale):
    head = {}
    for name, (o, i) in (('fc1', (24, 7 * D)), ('mlp_resnet_blocks.0.ffn.1', (24, 24)),
                         ('mlp_resnet_blocks.1.ffn.1', (24, 24)), ('fc2', (7, 24))):
        head[f'module.model.{name}.weight'], head[f'module.model.{name}.bias'] = \
            _linear(gen, o, i)
    head['module.model.fc2.bias'] = head['module.model.fc2.bias'] * 0 + head_scale
    for name, n in (('layer_norm1', 7 * D), ('mlp_resnet_blocks.0.ffn.0', 24),
                    ('mlp_resnet_blocks.1.ffn.0', 24), ('layer_norm2', 24)):
        head[f'module.model.{name}.weight'] = 1 + 0.1 * torch.randn(n, generator=gen)
        head[f'module.model.{name}.bias'] = 0.1 * torch.randn(n, generator=gen)
    proprio = {'module.fc1.weight': torch.randn(D, 8, generator=gen) * 0.3,
               'module.fc1.bias': torch.zeros(D),
               'module.fc2.weight': torch.randn(D, D, generator=gen) / math.sqrt(D),
               'module.fc2.bias': torch.zeros(D)}
    return head, proprio


def _film_file(gen, state):
    """FiLM's ``vision_backbone--*`` state: PEFT-LoRA'd linears, blocks wrapped, scale/shift."""
    film = {}
    for t, tower in enumerate(('featurizer', 'fused_featurizer')):
        prefix = f'vision_backbone.{tower}.'
        dim = TOWER_DIMS[t][0]
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            parts = name.split('.')
            if parts[0] == 'blocks':  # FiLMedVisionTransformerBlock holds the block as .block
                name = '.'.join(parts[:2] + ['block'] + parts[2:])
            lora = name.endswith('.weight') and value.ndim == 2 and \
                not name.startswith('attn_pool.latent')
            if not lora:
                film[prefix + name] = value.clone()
                continue
            stem = name[:-len('.weight')]
            film[f'{prefix}{stem}.base_layer.weight'] = value.clone()
            film[f'{prefix}{stem}.lora_A.default.weight'] = \
                torch.randn(LORA_RANK, value.shape[1], generator=gen) * 0.2
            film[f'{prefix}{stem}.lora_B.default.weight'] = \
                torch.randn(value.shape[0], LORA_RANK, generator=gen) * 0.2
        for key in [k for k in film if k.endswith('.bias') and '.base_layer' not in k]:
            stem = key[:-len('.bias')]
            if f'{stem}.base_layer.weight' in film:
                film[f'{stem}.base_layer.bias'] = film.pop(key)
        for i in range(DEPTH):
            for kind in ('scale', 'shift'):
                w, b = _linear(gen, dim, D)
                film[f'{prefix}blocks.{i}.{kind}.weight'] = w * 0.5
                film[f'{prefix}blocks.{i}.{kind}.bias'] = b
    return film


def write_upstream(folder, oft: bool, seed: int = 0, shards: int = 2, film: bool = False,
                   key: str = 'libero_spatial_no_noops', dtype=torch.float32, head_scale=0.0):
    """Write a Hub-layout folder; return (upstream tensors, {part: tensors w/o module.})."""
    gen = torch.Generator().manual_seed(seed)
    state = {f'vision_backbone.featurizer.{k}': v
             for k, v in _vit(gen, *TOWER_DIMS[0], attn_pool=False).items()}
    state.update({f'vision_backbone.fused_featurizer.{k}': v
                  for k, v in _vit(gen, *TOWER_DIMS[1], attn_pool=True).items()})
    vdim = TOWER_DIMS[0][0] + TOWER_DIMS[1][0]
    for name, (o, i) in (('fc1', (4 * vdim, vdim)), ('fc2', (D, 4 * vdim)), ('fc3', (D, D))):
        state[f'projector.{name}.weight'], state[f'projector.{name}.bias'] = _linear(gen, o, i)
    lm = 'language_model.model.'
    state[lm + 'embed_tokens.weight'] = torch.randn(VOCAB, D, generator=gen)
    state[lm + 'norm.weight'] = 1 + 0.1 * torch.randn(D, generator=gen)
    for i in range(LAYERS):
        b = f'{lm}layers.{i}.'
        for name, (o, i_) in (('self_attn.q_proj', (D, D)), ('self_attn.k_proj', (D, D)),
                              ('self_attn.v_proj', (D, D)), ('self_attn.o_proj', (D, D)),
                              ('mlp.gate_proj', (MLP, D)), ('mlp.up_proj', (MLP, D)),
                              ('mlp.down_proj', (D, MLP))):
            state[b + name + '.weight'] = torch.randn(o, i_, generator=gen) / math.sqrt(i_)
        state[b + 'input_layernorm.weight'] = 1 + 0.1 * torch.randn(D, generator=gen)
        state[b + 'post_attention_layernorm.weight'] = 1 + 0.1 * torch.randn(D, generator=gen)
    lm_head = torch.randn(VOCAB, D, generator=gen) * 0.2
    lm_head[VOCAB - PAD - 255:VOCAB - PAD] *= 8  # make action tokens win the argmax often
    state['language_model.lm_head.weight'] = lm_head
    state = {k: v.to(dtype).to(torch.float32) for k, v in state.items()}  # what the file holds
    folder.mkdir(parents=True)
    _save_shards(state, folder, shards, dtype)
    stats = dataset_statistics(key)
    (folder / 'config.json').write_text(json.dumps(hub_config(stats), indent=2))
    (folder / 'dataset_statistics.json').write_text(json.dumps(stats, indent=2))
    tokenizer_files(folder)
    parts = {}
    if oft:
        head, proprio = _oft_parts(gen, head_scale)
        torch.save(head, folder / 'action_head--150000_checkpoint.pt')
        torch.save(proprio, folder / 'proprio_projector--150000_checkpoint.pt')
        parts = {'head': {k[7:]: v for k, v in head.items()},
                 'proprio': {k[7:]: v for k, v in proprio.items()}}
    if film:
        parts['film'] = _film_file(gen, state)
        torch.save(parts['film'], folder / 'vision_backbone--150000_checkpoint.pt')
    return state, parts


# -- the reference forward, from upstream semantics only ---------------------------------------
def _peft(film, prefix, name):
    """Return f(x) = Linear(x) as PEFT's LoRA layer computes it (or the plain linear)."""
    base = film.get(f'{prefix}{name}.base_layer.weight')
    if base is None:
        return lambda x: F.linear(x, film[f'{prefix}{name}.weight'],
                                  film[f'{prefix}{name}.bias'])
    a, b = film[f'{prefix}{name}.lora_A.default.weight'], \
        film[f'{prefix}{name}.lora_B.default.weight']
    scaling = min(LORA_RANK, 16) / LORA_RANK  # deploy: lora_alpha = min(lora_rank, 16)
    return lambda x: F.linear(x, base, film[f'{prefix}{name}.base_layer.bias']) + \
        F.linear(F.linear(x, a), b) * scaling


def ref_vit(s, prefix, pixels, registers, film=None, lang=None):
    """timm ViT up to the output of block depth - 2 (OpenVLA's intermediate layer)."""
    def w(k):
        return s[prefix + k] if film is None else film[prefix + k]

    def lin(name, x, i):
        if film is None:
            return F.linear(x, w(f'blocks.{i}.{name}.weight'), w(f'blocks.{i}.{name}.bias'))
        return _peft(film, f'{prefix}blocks.{i}.block.', name)(x)
    dim = w('patch_embed.proj.weight').shape[0]
    heads = 16
    x = F.conv2d(pixels, w('patch_embed.proj.weight'), w('patch_embed.proj.bias'), stride=PATCH)
    x = x.flatten(2).transpose(1, 2) + w('pos_embed')  # no_embed_class: patches only
    if registers:
        b = x.shape[0]
        x = torch.cat([w('cls_token').expand(b, -1, -1), w('reg_token').expand(b, -1, -1), x], 1)
    for i in range(DEPTH - 1):  # get_intermediate_layers(n={depth - 2}): output of block d-2
        p = f'blocks.{i}.' if film is None else f'blocks.{i}.block.'
        h = F.layer_norm(x, (dim,), w(p + 'norm1.weight'), w(p + 'norm1.bias'), 1e-6)
        qkv = lin('attn.qkv', h, i)
        q, k, v = qkv.reshape(x.shape[0], x.shape[1], 3, heads, -1).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ v
        out = lin('attn.proj', att.transpose(1, 2).reshape(x.shape), i)
        x = x + (w(p + 'ls1.scale_factor') * out if registers else out)
        if film is not None:  # FiLMedVisionTransformerBlock: between attention and MLP
            gamma = F.linear(lang, w(f'blocks.{i}.scale.weight'), w(f'blocks.{i}.scale.bias'))
            beta = F.linear(lang, w(f'blocks.{i}.shift.weight'), w(f'blocks.{i}.shift.bias'))
            x = x * (1 + gamma[:, None]) + beta[:, None]
        h = F.layer_norm(x, (dim,), w(p + 'norm2.weight'), w(p + 'norm2.bias'), 1e-6)
        out = lin('mlp.fc2', F.gelu(lin('mlp.fc1', h, i)), i)
        x = x + (w(p + 'ls2.scale_factor') * out if registers else out)
    return x[:, (1 + registers) if registers else 0:]


def ref_llama(s, x, causal=True):
    """x (1, N, D) embeddings -> final-norm hidden states; rms eps and rope theta defaults."""
    lm = 'language_model.model.'
    rms = lambda t, wt: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * wt  # noqa
    n, hd = x.shape[1], D // HEADS
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.arange(n).float()[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rot = lambda t: torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1)  # noqa: E731
    bias = torch.full((n, n), float('-inf')).triu(1) if causal else torch.zeros(n, n)
    for i in range(LAYERS):
        p = f'{lm}layers.{i}.'
        h = rms(x, s[p + 'input_layernorm.weight'])
        q, k, v = (F.linear(h, s[p + f'self_attn.{c}_proj.weight']).view(1, n, HEADS, hd)
                   .transpose(1, 2) for c in 'qkv')
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(hd) + bias).softmax(-1) @ v
        x = x + F.linear(att.transpose(1, 2).reshape(1, n, D), s[p + 'self_attn.o_proj.weight'])
        h = rms(x, s[p + 'post_attention_layernorm.weight'])
        x = x + F.linear(F.silu(F.linear(h, s[p + 'mlp.gate_proj.weight']))
                         * F.linear(h, s[p + 'mlp.up_proj.weight']), s[p + 'mlp.down_proj.weight'])
    return rms(x, s[lm + 'norm.weight'])


def ref_pixels(image):
    """(DINOv2-normalized, SigLIP-normalized) pixels of an IMG x IMG image."""
    img = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0
    dino = (img - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return dino, (img - 0.5) / 0.5


def ref_patches(s, images, parts, proprio, lang=None):
    """Projected patch tokens of every image, in order, then the proprio token."""
    film = parts.get('film')
    feats = []
    for image in images:  # OFT: torch.split(pixel_values, [6] * num_images) -> cat on patches
        dino, sig = ref_pixels(image)
        feats.append(torch.cat([
            ref_vit(s, 'vision_backbone.featurizer.', dino, 4, film, lang),
            ref_vit(s, 'vision_backbone.fused_featurizer.', sig, 0, film, lang)], 2))
    feats = torch.cat(feats, 1)
    lin = lambda t, n: F.linear(t, s[f'projector.{n}.weight'], s[f'projector.{n}.bias'])  # noqa
    h = lin(F.gelu(lin(F.gelu(lin(feats, 'fc1')), 'fc2')), 'fc3')
    if 'proprio' in parts:
        pr = parts['proprio']
        p = torch.as_tensor(proprio, dtype=torch.float32)[None]
        p = F.linear(F.gelu(F.linear(p, pr['fc1.weight'], pr['fc1.bias'])), pr['fc2.weight'],
                     pr['fc2.bias'])
        h = torch.cat([h, p[:, None]], 1)
    return h


def ref_prompt_ids(tokenizer, text):
    """The prompt ids with the empty token 29871 appended, as predict_action does."""
    ids = tokenizer(f'In: What action should the robot take to {text.lower()}?\nOut:')[
        'input_ids']
    return ids + [EMPTY] if ids[-1] != EMPTY else ids


def ref_oft(s, parts, images, ids, proprio, chunk=8):
    """OFT's normalized chunk (chunk, 7): bidirectional Llama, zeroed placeholders."""
    emb = s['language_model.model.embed_tokens.weight']
    n_act = 7 * chunk
    seq = ids + [1] * n_act + [STOP]
    e = emb[torch.tensor(seq)][None].clone()
    lang = None
    if 'film' in parts:  # language_embeddings = input_embeddings[~all_actions_mask]: prompt+stop
        keep = torch.tensor([True] * len(ids) + [False] * n_act + [True])
        lang = e[:, keep].mean(1)
    patches = ref_patches(s, images, parts, proprio, lang)
    e[:, len(ids):len(ids) + n_act] = 0  # placeholders zeroed, stop kept
    x = torch.cat([e[:, :1], patches, e[:, 1:]], 1)
    h = ref_llama(s, x, causal=False)  # the pinned transformers fork: is_causal = False
    start = patches.shape[1] + len(ids) - 1  # NUM_PATCHES + NUM_PROMPT_TOKENS
    acts = h[:, start:start + n_act].reshape(1, chunk, 7 * D)
    hd = parts['head']
    lin = lambda t, n: F.linear(t, hd[f'model.{n}.weight'], hd[f'model.{n}.bias'])  # noqa
    ln = lambda t, n: F.layer_norm(t, (t.shape[-1],), hd[f'model.{n}.weight'],  # noqa: E731
                                   hd[f'model.{n}.bias'])
    x = torch.relu(lin(ln(acts, 'layer_norm1'), 'fc1'))
    for b in range(2):
        x = x + torch.relu(lin(ln(x, f'mlp_resnet_blocks.{b}.ffn.0'),
                               f'mlp_resnet_blocks.{b}.ffn.1'))
    return lin(ln(x, 'layer_norm2'), 'fc2')[0].numpy()  # (chunk, 7) normalized


def ref_discrete(s, image, ids):
    """OpenVLA's greedy 7 tokens and their bin centres (causal)."""
    emb = s['language_model.model.embed_tokens.weight']
    patches = ref_patches(s, [image], {}, None)
    seq = list(ids)
    for _ in range(7):
        e = emb[torch.tensor(seq)][None]
        h = ref_llama(s, torch.cat([e[:, :1], patches, e[:, 1:]], 1))
        seq.append(int(F.linear(h[:, -1], s['language_model.lm_head.weight']).argmax()))
    tokens = np.array(seq[-7:])
    bins = np.linspace(-1, 1, 256)
    centers = (bins[:-1] + bins[1:]) / 2
    return centers[np.clip((VOCAB - PAD) - tokens - 1, 0, 254)][None], tokens


def unnorm_oft(normed, stats, low='q01', high='q99'):
    """OFT _unnormalize_actions: 0.5 (x + 1) (hi - lo + 1e-8) + lo, x not clipped."""
    lo, hi = np.array(stats[low]), np.array(stats[high])
    return np.where(stats['mask'], 0.5 * (normed + 1) * (hi - lo + 1e-8) + lo, normed)


def unnorm_openvla(normed, stats):
    """OpenVLA predict_action: 0.5 (x + 1) (q99 - q01) + q01 on masked dims."""
    lo, hi = np.array(stats['q01']), np.array(stats['q99'])
    mask = np.array(stats.get('mask', [True] * lo.size))
    return np.where(mask, 0.5 * (normed + 1) * (hi - lo) + lo, normed)


def normalize_proprio(p, stats, low='q01', high='q99'):
    """OFT normalize_proprio: the clip comes after the mask."""
    lo, hi = np.array(stats[low]), np.array(stats[high])
    return np.clip(np.where(stats['mask'], 2 * (p - lo) / (hi - lo + 1e-8) - 1, p), -1, 1)
