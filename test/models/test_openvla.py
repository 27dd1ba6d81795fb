# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Upstream OpenVLA / OFT folders load and reproduce a reference forward of the same tensors.

The test writes small random checkpoints in the upstream layout (timm-named fused
DINOv2-reg4 + SigLIP featurizers, fused-GELU projector fc1..fc3, ``language_model.*`` Llama,
OFT ``action_head--*.pt`` / ``proprio_projector--*.pt`` with DDP prefixes, a tokenizer,
dataset_statistics.json) and compares our loader with a plain-torch forward written here
from the upstream semantics: timm blocks with fused qkv and LayerScale, features from the
second-to-last block, Llama with RoPE / RMSNorm / SwiGLU / causal attention, OpenVLA's greedy
decoding and bin mapping, OFT's zeroed placeholders and hidden-state slice.
"""

import json
import math

import numpy as np
import pytest
from safetensors.torch import save_file
import torch
import torch.nn.functional as F

from qvla_ros.models.checkpoint import load_policy
from qvla_ros.models.openvla import EMPTY_TOKEN, PROMPT
from qvla_ros.models.openvla_loader import load_openvla
from qvla_ros.runtime.types import Observation

DINO_ID, SIGLIP_ID = 'vit_large_patch14_reg4_dinov2.lvd142m', 'vit_so400m_patch14_siglip_224'
IMG, PATCH, DEPTH = 28, 14, 3
VOCAB, PAD, D, LAYERS, HEADS, KV = 32064, 64, 32, 2, 4, 2
WORDS = ['in:', 'what', 'action', 'should', 'the', 'robot', 'take', 'to', 'out:', 'push',
         'red', 'block', 'left', 'pick', 'up', 'cup?', 'left?', 'cup']


def _vit(gen, dim, mlp, registers):
    s = {'patch_embed.proj.weight': torch.randn(dim, 3, PATCH, PATCH, generator=gen) * 0.05,
         'patch_embed.proj.bias': torch.randn(dim, generator=gen) * 0.02,
         'pos_embed': torch.randn(1, (IMG // PATCH) ** 2, dim, generator=gen) * 0.1,
         'norm.weight': torch.ones(dim), 'norm.bias': torch.zeros(dim)}
    if registers:
        s['cls_token'] = torch.randn(1, 1, dim, generator=gen)
        s['reg_token'] = torch.randn(1, registers, dim, generator=gen)
    for i in range(DEPTH):
        b = f'blocks.{i}.'
        for name, shape in (('norm1', (dim,)), ('norm2', (dim,))):
            s[b + name + '.weight'] = 1 + 0.1 * torch.randn(shape, generator=gen)
            s[b + name + '.bias'] = 0.1 * torch.randn(shape, generator=gen)
        for name, (o, i_) in (('attn.qkv', (3 * dim, dim)), ('attn.proj', (dim, dim)),
                              ('mlp.fc1', (mlp, dim)), ('mlp.fc2', (dim, mlp))):
            s[b + name + '.weight'] = torch.randn(o, i_, generator=gen) / math.sqrt(i_)
            s[b + name + '.bias'] = 0.05 * torch.randn(o, generator=gen)
        if registers:
            s[b + 'ls1.scale_factor'] = 0.5 + torch.rand(dim, generator=gen)
            s[b + 'ls2.scale_factor'] = 0.5 + torch.rand(dim, generator=gen)
    return s


def _tokenizer(folder):
    from tokenizers import models, pre_tokenizers, processors, Tokenizer
    from transformers import PreTrainedTokenizerFast
    vocab = {'<unk>': 0, '<s>': 1, '</s>': 2, **{w: 3 + i for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single='<s> $A', special_tokens=[
        ('<s>', 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<s>', eos_token='</s>',
                            unk_token='<unk>').save_pretrained(str(folder))


def write_upstream(folder, oft: bool, seed: int = 0):
    """Write a random upstream-layout checkpoint; return its tensors (upstream names)."""
    gen = torch.Generator().manual_seed(seed)
    state = {f'vision_backbone.featurizer.{k}': v for k, v in _vit(gen, 32, 64, 4).items()}
    state.update({f'vision_backbone.fused_featurizer.{k}': v
                  for k, v in _vit(gen, 48, 80, 0).items()})
    vdim = 80
    for name, (o, i) in (('fc1', (4 * vdim, vdim)), ('fc2', (D, 4 * vdim)), ('fc3', (D, D))):
        state[f'projector.{name}.weight'] = torch.randn(o, i, generator=gen) / math.sqrt(i)
        state[f'projector.{name}.bias'] = 0.05 * torch.randn(o, generator=gen)
    lm = 'language_model.model.'
    state[lm + 'embed_tokens.weight'] = torch.randn(VOCAB, D, generator=gen)
    state[lm + 'norm.weight'] = 1 + 0.1 * torch.randn(D, generator=gen)
    hd = D // HEADS
    for i in range(LAYERS):
        b = f'{lm}layers.{i}.'
        for name, (o, i_) in (('self_attn.q_proj', (D, D)), ('self_attn.k_proj', (KV * hd, D)),
                              ('self_attn.v_proj', (KV * hd, D)), ('self_attn.o_proj', (D, D)),
                              ('mlp.gate_proj', (64, D)), ('mlp.up_proj', (64, D)),
                              ('mlp.down_proj', (D, 64))):
            state[b + name + '.weight'] = torch.randn(o, i_, generator=gen) / math.sqrt(i_)
        state[b + 'input_layernorm.weight'] = 1 + 0.1 * torch.randn(D, generator=gen)
        state[b + 'post_attention_layernorm.weight'] = 1 + 0.1 * torch.randn(D, generator=gen)
    lm_head = torch.randn(VOCAB, D, generator=gen) * 0.2
    lm_head[VOCAB - PAD - 255:VOCAB - PAD] *= 8  # make action tokens win the argmax often
    state['language_model.lm_head.weight'] = lm_head
    folder.mkdir(parents=True)
    save_file(state, str(folder / 'model.safetensors'))
    config = {'architectures': ['OpenVLAForActionPrediction'], 'model_type': 'openvla',
              'use_fused_vision_backbone': True, 'timm_model_ids': [DINO_ID, SIGLIP_ID],
              'timm_override_act_layers': [None, None], 'image_sizes': [IMG, IMG],
              'n_action_bins': 256, 'pad_to_multiple_of': PAD,
              'text_config': {'model_type': 'llama', 'vocab_size': VOCAB, 'hidden_size': D,
                              'intermediate_size': 64, 'num_hidden_layers': LAYERS,
                              'num_attention_heads': HEADS, 'num_key_value_heads': KV,
                              'rms_norm_eps': 1e-6, 'rope_theta': 10000.0,
                              'max_position_embeddings': 256}}
    stats = {'libero_spatial': {
        'action': {'q01': [-0.5] * 6 + [0.0], 'q99': [0.5] * 6 + [1.0],
                   'mask': [True] * 6 + [False]},
        'proprio': {'q01': [-1.0] * 8, 'q99': [1.0] * 8, 'mask': [True] * 8}},
        'bridge_orig': {'action': {'q01': [-1.0] * 7, 'q99': [1.0] * 7}}}
    (folder / 'config.json').write_text(json.dumps(config))
    (folder / 'dataset_statistics.json').write_text(json.dumps(stats))
    _tokenizer(folder)
    heads = {}
    if oft:
        head = {}
        for name, (o, i) in (('fc1', (24, 7 * D)), ('mlp_resnet_blocks.0.ffn.1', (24, 24)),
                             ('mlp_resnet_blocks.1.ffn.1', (24, 24)), ('fc2', (7, 24))):
            head[f'module.model.{name}.weight'] = torch.randn(o, i, generator=gen) / math.sqrt(i)
            head[f'module.model.{name}.bias'] = 0.05 * torch.randn(o, generator=gen)
        for name, n in (('layer_norm1', 7 * D), ('mlp_resnet_blocks.0.ffn.0', 24),
                        ('mlp_resnet_blocks.1.ffn.0', 24), ('layer_norm2', 24)):
            head[f'module.model.{name}.weight'] = 1 + 0.1 * torch.randn(n, generator=gen)
            head[f'module.model.{name}.bias'] = 0.1 * torch.randn(n, generator=gen)
        proprio = {'module.fc1.weight': torch.randn(D, 8, generator=gen) * 0.3,
                   'module.fc1.bias': torch.zeros(D),
                   'module.fc2.weight': torch.randn(D, D, generator=gen) / math.sqrt(D),
                   'module.fc2.bias': torch.zeros(D)}
        torch.save(head, folder / 'action_head--150000_checkpoint.pt')
        torch.save(proprio, folder / 'proprio_projector--150000_checkpoint.pt')
        heads = {'head': {k[7:]: v for k, v in head.items()},
                 'proprio': {k[7:]: v for k, v in proprio.items()}}
    return state, heads


# -- the reference forward, from upstream semantics only ---------------------------------------
def ref_vit(s, prefix, pixels, registers):
    w = lambda k: s[prefix + k]  # noqa: E731
    dim = w('patch_embed.proj.weight').shape[0]
    heads = 16
    x = F.conv2d(pixels, w('patch_embed.proj.weight'), w('patch_embed.proj.bias'), stride=PATCH)
    x = x.flatten(2).transpose(1, 2) + w('pos_embed')  # no_embed_class: patches only
    if registers:
        b = x.shape[0]
        x = torch.cat([w('cls_token').expand(b, -1, -1), w('reg_token').expand(b, -1, -1), x], 1)
    for i in range(DEPTH - 1):  # get_intermediate_layers(n={depth - 2}): output of block d-2
        p = f'blocks.{i}.'
        h = F.layer_norm(x, (dim,), w(p + 'norm1.weight'), w(p + 'norm1.bias'), 1e-6)
        qkv = F.linear(h, w(p + 'attn.qkv.weight'), w(p + 'attn.qkv.bias'))
        q, k, v = qkv.reshape(x.shape[0], x.shape[1], 3, heads, -1).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ v
        out = F.linear(att.transpose(1, 2).reshape(x.shape), w(p + 'attn.proj.weight'),
                       w(p + 'attn.proj.bias'))
        x = x + (w(p + 'ls1.scale_factor') * out if registers else out)
        h = F.layer_norm(x, (dim,), w(p + 'norm2.weight'), w(p + 'norm2.bias'), 1e-6)
        out = F.linear(F.gelu(F.linear(h, w(p + 'mlp.fc1.weight'), w(p + 'mlp.fc1.bias'))),
                       w(p + 'mlp.fc2.weight'), w(p + 'mlp.fc2.bias'))
        x = x + (w(p + 'ls2.scale_factor') * out if registers else out)
    return x[:, (1 + registers) if registers else 0:]


def ref_llama(s, x):
    """x (1, N, D) embeddings -> final-norm hidden states, causal."""
    lm = 'language_model.model.'
    rms = lambda t, wt: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * wt  # noqa
    n, hd = x.shape[1], D // HEADS
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.arange(n).float()[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rot = lambda t: torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1)  # noqa: E731
    causal = torch.full((n, n), float('-inf')).triu(1)
    for i in range(LAYERS):
        p = f'{lm}layers.{i}.'
        h = rms(x, s[p + 'input_layernorm.weight'])
        q = F.linear(h, s[p + 'self_attn.q_proj.weight']).view(1, n, HEADS, hd).transpose(1, 2)
        k = F.linear(h, s[p + 'self_attn.k_proj.weight']).view(1, n, KV, hd).transpose(1, 2)
        v = F.linear(h, s[p + 'self_attn.v_proj.weight']).view(1, n, KV, hd).transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = k.repeat_interleave(HEADS // KV, 1), v.repeat_interleave(HEADS // KV, 1)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(hd) + causal).softmax(-1) @ v
        x = x + F.linear(att.transpose(1, 2).reshape(1, n, D), s[p + 'self_attn.o_proj.weight'])
        h = rms(x, s[p + 'post_attention_layernorm.weight'])
        x = x + F.linear(F.silu(F.linear(h, s[p + 'mlp.gate_proj.weight']))
                         * F.linear(h, s[p + 'mlp.up_proj.weight']), s[p + 'mlp.down_proj.weight'])
    return rms(x, s[lm + 'norm.weight'])


def ref_patches(s, image, heads, proprio):
    img = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0  # already IMG x IMG
    dino = (img - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    sig = (img - 0.5) / 0.5
    feats = torch.cat([ref_vit(s, 'vision_backbone.featurizer.', dino, 4),
                       ref_vit(s, 'vision_backbone.fused_featurizer.', sig, 0)], 2)
    lin = lambda t, n: F.linear(t, s[f'projector.{n}.weight'], s[f'projector.{n}.bias'])  # noqa
    h = lin(F.gelu(lin(F.gelu(lin(feats, 'fc1')), 'fc2')), 'fc3')
    if heads:
        pr = heads['proprio']
        p = torch.from_numpy(proprio)[None]
        p = F.linear(F.gelu(F.linear(p, pr['fc1.weight'], pr['fc1.bias'])), pr['fc2.weight'],
                     pr['fc2.bias'])
        h = torch.cat([h, p[:, None]], 1)
    return h


def ref_prompt_ids(tokenizer, text):
    ids = tokenizer(PROMPT.format(text.lower()))['input_ids']
    return ids + [EMPTY_TOKEN] if ids[-1] != EMPTY_TOKEN else ids


def ref_oft(s, heads, image, ids, proprio):
    emb = s['language_model.model.embed_tokens.weight']
    patches = ref_patches(s, image, heads, proprio)
    seq = ids + [1] * 56 + [2]
    e = emb[torch.tensor(seq)][None].clone()
    e[:, len(ids):len(ids) + 56] = 0  # placeholders zeroed, stop kept
    x = torch.cat([e[:, :1], patches, e[:, 1:]], 1)
    h = ref_llama(s, x)
    start = patches.shape[1] + len(ids) - 1  # NUM_PATCHES + NUM_PROMPT_TOKENS
    acts = h[:, start:start + 56].reshape(1, 8, 7 * D)
    hd = heads['head']
    lin = lambda t, n: F.linear(t, hd[f'model.{n}.weight'], hd[f'model.{n}.bias'])  # noqa
    ln = lambda t, n: F.layer_norm(t, (t.shape[-1],), hd[f'model.{n}.weight'],  # noqa: E731
                                   hd[f'model.{n}.bias'])
    x = torch.relu(lin(ln(acts, 'layer_norm1'), 'fc1'))
    for b in range(2):
        x = x + torch.relu(lin(ln(x, f'mlp_resnet_blocks.{b}.ffn.0'),
                               f'mlp_resnet_blocks.{b}.ffn.1'))
    return lin(ln(x, 'layer_norm2'), 'fc2')[0].numpy()  # (8, 7) normalized


def ref_discrete(s, image, ids):
    emb = s['language_model.model.embed_tokens.weight']
    patches = ref_patches(s, image, {}, None)
    seq = list(ids)
    for _ in range(7):
        e = emb[torch.tensor(seq)][None]
        h = ref_llama(s, torch.cat([e[:, :1], patches, e[:, 1:]], 1))
        seq.append(int(F.linear(h[:, -1], s['language_model.lm_head.weight']).argmax()))
    tokens = np.array(seq[-7:])
    bins = np.linspace(-1, 1, 256)
    centers = (bins[:-1] + bins[1:]) / 2
    return centers[np.clip((VOCAB - PAD) - tokens - 1, 0, 254)][None], tokens


def unnorm(normed, key_stats):
    q01, q99 = np.array(key_stats['q01']), np.array(key_stats['q99'])
    mask = np.array(key_stats.get('mask', [True] * q01.size))
    return np.where(mask, 0.5 * (np.clip(normed, -1, 1) + 1) * (q99 - q01) + q01, normed)


def _obs(seed, text='push the red block to the left'):
    rng = np.random.default_rng(seed)
    return Observation({'cam': rng.integers(0, 256, (IMG, IMG, 3), dtype=np.uint8)}, text,
                       rng.uniform(-1, 1, 8).astype(np.float32))


@pytest.mark.parametrize('seed', [0, 1])
def test_oft_matches_reference(tmp_path, seed):
    folder = tmp_path / 'oft'
    state, heads = write_upstream(folder, oft=True, seed=seed)
    policy = load_openvla(folder, unnorm_key='libero_spatial')
    assert policy.config.variant == 'l1' and policy.metadata()['chunk_size'] == 8
    obs = _obs(seed)
    ids = ref_prompt_ids(policy.tokenizer, obs.instruction)
    with torch.no_grad():
        normed = ref_oft(state, heads, obs.images['cam'], ids, obs.proprio)
    stats = json.loads((folder / 'dataset_statistics.json').read_text())['libero_spatial']
    expected = unnorm(normed, stats['action'])
    got = policy.predict(obs).actions
    assert got.shape == (8, 7)
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)
    # proprio is part of the input: a different state changes the actions
    other = Observation(obs.images, obs.instruction, -obs.proprio)
    assert not np.allclose(policy.predict(other).actions, got)


def test_discrete_openvla_matches_reference_greedy_decoding(tmp_path):
    folder = tmp_path / 'openvla'
    state, _ = write_upstream(folder, oft=False, seed=3)
    policy = load_openvla(folder, unnorm_key='bridge_orig')
    assert policy.config.variant == 'discrete' and policy.metadata()['chunk_size'] == 1
    obs = _obs(3, 'pick up the cup')
    ids = ref_prompt_ids(policy.tokenizer, obs.instruction)
    with torch.no_grad():
        normed, tokens = ref_discrete(state, obs.images['cam'], ids)
    assert (tokens >= VOCAB - PAD - 255).sum() >= 4, 'the test model should emit action tokens'
    stats = json.loads((folder / 'dataset_statistics.json').read_text())['bridge_orig']
    np.testing.assert_allclose(policy.predict(obs).actions, unnorm(normed, stats['action']),
                               atol=1e-6)
    # the differentiable surrogate has gradients and stays within the bins
    batch = policy.make_batch(obs)
    out = policy.action_tensor(batch)
    assert out.shape == (1, 1, 7) and out.abs().max() <= 1
    out.sum().backward()
    assert any(m.weight.grad is not None and m.weight.grad.abs().sum() > 0
               for m in policy.quantizable_layers().values())


def test_load_policy_dispatch_and_errors(tmp_path):
    folder = tmp_path / 'oft'
    write_upstream(folder, oft=True)
    with pytest.raises(ValueError, match='several norm-stats keys'):
        load_openvla(folder)
    with pytest.raises(ValueError, match="available keys: \\['bridge_orig', 'libero_spatial'\\]"):
        load_openvla(folder, unnorm_key='nope')
    policy = load_policy(str(folder), unnorm_key='libero_spatial')
    layers = policy.quantizable_layers()
    assert any(k.startswith('vision.0.') for k in layers)
    assert any(k.startswith('language.') for k in layers)
    assert not any(k.startswith(('projector', 'action_head', 'lm_head')) for k in layers)
    (folder / 'model.safetensors').rename(folder / 'pytorch_model.bin')
    with pytest.raises(FileNotFoundError, match='pickles are not loaded'):
        load_openvla(folder, unnorm_key='libero_spatial')


def test_quantized_openvla_runs_through_packed_layers(tmp_path):
    from qvla_ros.kernels.linear import MixedBitLinear
    from qvla_ros.quant.apply import quantize_
    from qvla_ros.quant.baselines.rtn import rtn
    from qvla_ros.quant.spec import QuantSpec
    folder = tmp_path / 'oft'
    write_upstream(folder, oft=True)
    policy = load_openvla(folder, unnorm_key='libero_spatial')
    obs = _obs(0)
    fp = policy.predict(obs).actions
    layers = policy.quantizable_layers()
    quantize_(policy, layers, rtn(layers, 8), QuantSpec(), mode='packed')
    assert sum(isinstance(m, MixedBitLinear) for m in policy.modules()) == len(layers)
    q = policy.predict(obs).actions
    assert np.abs(q - fp).max() < 0.05 * (np.abs(fp).max() + 1e-3)


def test_quantized_openvla_checkpoint_round_trip(tmp_path):
    from qvla_ros.cli.quant_cmds import build_quantized
    folder = tmp_path / 'oft'
    write_upstream(folder, oft=True)
    # calibration batches of different prompt lengths are left-padded and collated
    calib = tmp_path / 'calib'
    _write_calibration(calib)
    out = tmp_path / 'q'
    line = build_quantized(str(folder), out, method='qvla', bits=4.0, dataset=str(calib),
                           max_samples=4, stride=1, refine_fraction=0.05,
                           unnorm_key='libero_spatial')
    assert 'qvla' in line
    policy = load_policy(str(out))
    assert policy.config.variant == 'l1' and (out / 'tokenizer').is_dir()
    again = load_policy(str(out))
    obs = _obs(5)
    np.testing.assert_array_equal(policy.predict(obs).actions, again.predict(obs).actions)
    fp = load_openvla(folder, unnorm_key='libero_spatial').predict(obs).actions
    assert np.isfinite(policy.predict(obs).actions).all()
    assert np.abs(policy.predict(obs).actions - fp).max() < 1.0


def _write_calibration(root):
    from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
    writer = RolloutWriter(root, DatasetInfo(7, 8, 10.0, ('cam',)))
    rng = np.random.default_rng(0)
    for text in ('push the red block to the left', 'pick up the cup'):
        writer.add_episode({'cam': rng.integers(0, 256, (2, IMG, IMG, 3), dtype=np.uint8)},
                           rng.uniform(-1, 1, (2, 8)).astype(np.float32),
                           rng.uniform(-0.5, 0.5, (2, 7)).astype(np.float32),
                           np.arange(2, dtype=np.int64) * 100_000_000, text, True, 'sim',
                           'expert')
