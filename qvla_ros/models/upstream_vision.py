# Copyright 2026 qvla_ros authors. Apache-2.0.
"""OpenVLA's timm vision backbones rebuilt from transformers' DINOv2 and SigLIP classes.

OpenVLA (prismatic ``PrismaticVisionBackbone``) runs timm ViTs and keeps the patch tokens of
the *second-to-last* block (``get_intermediate_layers(n={depth - 2})``: no final norm, prefix
tokens dropped). The last block and the final norm never affect the output, so the rebuilt
encoder has depth - 1 layers. timm names (``blocks.N.attn.qkv`` fused, LayerScale as
``ls1.scale_factor`` after OpenVLA's patch) are mapped onto transformers' separate q/k/v.

* DINOv2 with registers (``vit_*_patch14_reg4_dinov2``): timm has no_embed_class=True, so its
  ``pos_embed`` covers patches only and its token order is [cls, reg x R, patches]; transformers
  adds position_embeddings to [cls, patches] and inserts the registers after cls, so the
  class slot of position_embeddings is zero.
* SigLIP (``vit_so400m_patch14_siglip_224`` and family): no class token; timm 0.9's default
  exact GELU (OpenVLA pins timm 0.9.x), LayerNorm eps 1e-6.
"""

from dataclasses import dataclass
from typing import Dict

import torch
from torch import nn

from qvla_ros.core.types import check_version

# Attention heads are not recoverable from weights; known timm ids -> heads.
TIMM_HEADS = {'vit_small': 6, 'vit_base': 12, 'vit_large': 16, 'vit_so400m': 16,
              'vit_huge': 16, 'vit_giant': 24}
IMAGE_STATS = {'dinov2': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
               'siglip': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


@dataclass(frozen=True)
class BackboneSpec:
    """One timm ViT as OpenVLA uses it; everything but ``heads`` comes from the weights."""

    family: str        # 'dinov2' | 'siglip'
    timm_id: str
    hidden: int
    depth: int         # timm blocks (the rebuilt encoder keeps depth - 1)
    heads: int
    mlp: int
    patch: int
    image_size: int
    registers: int = 0
    act: str = 'gelu'
    version: int = 1

    def __post_init__(self):
        check_version('BackboneSpec', self.version)

    @property
    def num_patches(self) -> int:
        """Patch tokens per image."""
        return (self.image_size // self.patch) ** 2


def family_of(timm_id: str) -> str:
    """Return 'dinov2' or 'siglip' for a timm model id; ValueError otherwise."""
    if 'dinov2' in timm_id:
        if 'reg' not in timm_id:
            raise ValueError(f'{timm_id}: only DINOv2 with registers (as OpenVLA uses) is '
                             'supported')
        return 'dinov2'
    if 'siglip' in timm_id:
        return 'siglip'
    raise ValueError(f'unsupported vision backbone {timm_id!r}; expected a timm DINOv2 (reg) '
                     'or SigLIP ViT id')


def heads_of(timm_id: str) -> int:
    """Return the attention heads of a timm ViT id (ValueError if unknown)."""
    for prefix, heads in TIMM_HEADS.items():
        if timm_id.startswith(prefix + '_'):
            return heads
    raise ValueError(f'cannot tell the attention heads of {timm_id!r}; known prefixes: '
                     f'{sorted(TIMM_HEADS)}')


def spec_from_state(timm_id: str, image_size: int, state: Dict[str, torch.Tensor],
                    act_override=None) -> BackboneSpec:
    """Infer a BackboneSpec from timm-named tensors (without the featurizer prefix)."""
    if 'patch_embed.proj.weight' not in state:
        raise ValueError(f'{timm_id}: missing patch_embed.proj.weight; expected timm ViT names')
    proj = state['patch_embed.proj.weight']  # (D, 3, p, p)
    depth = 1 + max(int(k.split('.')[1]) for k in state if k.startswith('blocks.'))
    act = {None: 'gelu', 'gelu': 'gelu', 'gelu_tanh': 'gelu_pytorch_tanh'}.get(act_override)
    if act is None:
        raise ValueError(f'unsupported timm_override_act_layer {act_override!r}')
    reg = state.get('reg_token')
    return BackboneSpec(family_of(timm_id), timm_id, proj.shape[0], depth, heads_of(timm_id),
                        state['blocks.0.mlp.fc1.weight'].shape[0], proj.shape[2], image_size,
                        0 if reg is None else reg.shape[1], act)


def build_backbone(spec: BackboneSpec) -> nn.Module:
    """Return the transformers module for ``spec`` (depth - 1 layers), random init."""
    kw = dict(hidden_size=spec.hidden, num_hidden_layers=spec.depth - 1,
              num_attention_heads=spec.heads, image_size=spec.image_size,
              patch_size=spec.patch, layer_norm_eps=1e-6, hidden_act=spec.act)
    if spec.family == 'dinov2':
        from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel
        if spec.mlp % spec.hidden:
            raise ValueError(f'{spec.timm_id}: MLP width {spec.mlp} is not a multiple of '
                             f'{spec.hidden}; transformers DINOv2 needs an integer mlp_ratio')
        return Dinov2WithRegistersModel(Dinov2WithRegistersConfig(
            mlp_ratio=spec.mlp // spec.hidden, num_register_tokens=spec.registers,
            layerscale_value=1.0, **kw))
    from transformers import SiglipVisionConfig, SiglipVisionModel
    return SiglipVisionModel(SiglipVisionConfig(intermediate_size=spec.mlp,
                                                vision_use_head=False, **kw))


def _split_qkv(state, src: str, dst: str, names=('q_proj', 'k_proj', 'v_proj')) -> dict:
    out = {}
    for kind in ('weight', 'bias'):
        for name, part in zip(names, state[f'{src}.{kind}'].chunk(3, dim=0)):
            out[f'{dst}.{name}.{kind}'] = part
    return out


def map_state(spec: BackboneSpec, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Map timm tensors to the state dict of ``build_backbone(spec)`` (last block dropped)."""
    out: Dict[str, torch.Tensor] = {}
    dino = spec.family == 'dinov2'
    emb = 'embeddings.'
    if dino:
        out[emb + 'patch_embeddings.projection.weight'] = state['patch_embed.proj.weight']
        out[emb + 'patch_embeddings.projection.bias'] = state['patch_embed.proj.bias']
        cls = state['cls_token']  # (1, 1, D)
        out[emb + 'cls_token'] = cls
        out[emb + 'register_tokens'] = state['reg_token']
        out[emb + 'position_embeddings'] = torch.cat([torch.zeros_like(cls),
                                                     state['pos_embed']], dim=1)
        out[emb + 'mask_token'] = torch.zeros(1, spec.hidden, dtype=cls.dtype)
    else:
        out[emb + 'patch_embedding.weight'] = state['patch_embed.proj.weight']
        out[emb + 'patch_embedding.bias'] = state['patch_embed.proj.bias']
        out[emb + 'position_embedding.weight'] = state['pos_embed'][0]
    for i in range(spec.depth - 1):
        src = f'blocks.{i}'
        dst = f'encoder.layer.{i}' if dino else f'encoder.layers.{i}'
        n1, n2 = ('norm1', 'norm2') if dino else ('layer_norm1', 'layer_norm2')
        attn = f'{dst}.attention' if dino else f'{dst}.self_attn'
        out.update(_split_qkv(state, f'{src}.attn.qkv', attn))
        o_name = 'o_proj' if dino else 'out_proj'
        for kind in ('weight', 'bias'):
            out[f'{attn}.{o_name}.{kind}'] = state[f'{src}.attn.proj.{kind}']
            out[f'{dst}.{n1}.{kind}'] = state[f'{src}.norm1.{kind}']
            out[f'{dst}.{n2}.{kind}'] = state[f'{src}.norm2.{kind}']
            out[f'{dst}.mlp.fc1.{kind}'] = state[f'{src}.mlp.fc1.{kind}']
            out[f'{dst}.mlp.fc2.{kind}'] = state[f'{src}.mlp.fc2.{kind}']
        if dino:
            for j in (1, 2):
                gamma = state.get(f'{src}.ls{j}.scale_factor', state.get(f'{src}.ls{j}.gamma'))
                if gamma is None:
                    raise ValueError(f'{spec.timm_id}: {src}.ls{j}.scale_factor is missing')
                out[f'{dst}.layer_scale{j}.lambda1'] = gamma
    # the final norm is unused (OpenVLA stops before it) but part of the module
    norm = 'layernorm' if dino else 'post_layernorm'
    out[f'{norm}.weight'] = torch.ones(spec.hidden)
    out[f'{norm}.bias'] = torch.zeros(spec.hidden)
    return out


class FiLM(nn.Module):
    """OFT+'s language conditioning of one ViT: per block, x = (1 + scale(l)) x + shift(l).

    Applied between each block's attention and MLP halves (upstream
    ``FiLMedVisionTransformerBlock``); ``l`` is the mean language embedding (B, llm_dim).
    """

    def __init__(self, blocks: int, llm_dim: int, vision_dim: int):
        super().__init__()
        self.scale = nn.ModuleList(nn.Linear(llm_dim, vision_dim) for _ in range(blocks))
        self.shift = nn.ModuleList(nn.Linear(llm_dim, vision_dim) for _ in range(blocks))


def _film_layer(layer: nn.Module, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                dino: bool) -> torch.Tensor:
    """One encoder layer with FiLM between its halves; x (B, T, D), gamma/beta (B, D)."""
    if dino:
        h, _ = layer.attention(layer.norm1(x))
        x = x + layer.layer_scale1(h)
    else:
        h, _ = layer.self_attn(hidden_states=layer.layer_norm1(x), attention_mask=None)
        x = x + h
    x = x * (1 + gamma[:, None]) + beta[:, None]
    if dino:
        return x + layer.layer_scale2(layer.mlp(layer.norm2(x)))
    return x + layer.mlp(layer.layer_norm2(x))


def patch_features(module: nn.Module, spec: BackboneSpec, pixels: torch.Tensor,
                   film: FiLM = None, language: torch.Tensor = None) -> torch.Tensor:
    """Return patch tokens (B, P, D) after block depth - 2, before any final norm.

    With ``film``, every block is modulated by ``language`` (B, llm_dim).
    """
    inner = getattr(module, 'vision_model', module)
    x = inner.embeddings(pixels)  # (B, prefix + P, D)
    if film is None:
        x = inner.encoder(x).last_hidden_state
    else:
        dino = spec.family == 'dinov2'
        layers = inner.encoder.layer if dino else inner.encoder.layers
        lang = language.to(x.dtype)
        for i, layer in enumerate(layers):
            x = _film_layer(layer, x, film.scale[i](lang), film.shift[i](lang), dino)
    prefix = 1 + spec.registers if spec.family == 'dinov2' else 0
    return x[:, prefix:]
