# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``qvla-ref``: an OpenVLA-OFT-shaped reference VLA built from transformers' classes.

Layout (docs/method.md, the model): SigLIP vision tower -> 2-layer GELU MLP projector -> a Llama
backbone over [vision tokens, instruction tokens, one proprio token, H x A action query
slots] -> an L1-regression MLP head that maps each step's A query states to its A actions, so
the whole (H, A) chunk comes out of one parallel forward pass (OFT style). With named
``cameras`` every camera's image goes through the one shared tower and projector, plus a
learned embedding of its camera, and their tokens come in the config's order (as OFT feeds
third-person then wrist); a config without cameras reads the observation's first image
(single-camera checkpoints). Differences from
OpenVLA-OFT, on purpose: one vision tower (SigLIP, no DINOv2 fusion), a causal mask (the
queries come last, so they see all context), and an offline hashed word tokenizer instead of
the Llama SentencePiece model.
"""

from dataclasses import asdict, dataclass
import time
from typing import Dict, FrozenSet, Optional, Tuple
import zlib

import numpy as np
import torch
from torch import nn

from qvla_ros.core.types import ActionChunk, check_version, Observation
from qvla_ros.models.inputs import dimension_names, image_tensor, images_tensor, proprio_tensor
from qvla_ros.models.normalization import ActionNormalizer
from qvla_ros.models.residual_rotation import rotate_llama_


@dataclass(frozen=True)
class RefConfig:
    """Sizes of qvla-ref; see CONFIGS for the named presets."""

    image_size: int = 128
    patch_size: int = 16
    vision_hidden: int = 256
    vision_layers: int = 6
    vision_heads: int = 4
    vision_mlp: int = 1024
    hidden: int = 384
    layers: int = 4
    heads: int = 6
    mlp: int = 1536
    vocab: int = 4096
    max_text_tokens: int = 16
    proprio_dim: int = 4
    action_dim: int = 7
    chunk_size: int = 8
    head_hidden: int = 512
    control_hz: float = 10.0
    cameras: Tuple[str, ...] = ()
    version: int = 1

    def __post_init__(self):
        object.__setattr__(self, 'cameras', tuple(self.cameras))
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f'camera names must be distinct, got {self.cameras}')
        if self.image_size % self.patch_size:
            raise ValueError(f'image_size {self.image_size} must be a multiple of patch_size '
                             f'{self.patch_size}')
        if self.hidden % self.heads or self.vision_hidden % self.vision_heads:
            raise ValueError('hidden sizes must be divisible by their head counts')
        check_version('RefConfig', self.version)

    @property
    def num_patches(self) -> int:
        """Vision tokens per image."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        """Tokens into the Llama backbone."""
        return (max(1, len(self.cameras)) * self.num_patches + self.max_text_tokens + 1
                + self.chunk_size * self.action_dim)


CONFIGS = {
    'tiny': RefConfig(image_size=64, patch_size=16, vision_hidden=64, vision_layers=2,
                      vision_heads=2, vision_mlp=128, hidden=64, layers=2, heads=2, mlp=128,
                      vocab=512, head_hidden=64),
    'small': RefConfig(vision_layers=4, vision_mlp=768, mlp=1024, vocab=1024,
                       max_text_tokens=12, head_hidden=256),
    'openvla-oft-7b': RefConfig(image_size=224, patch_size=14, vision_hidden=1152,
                                vision_layers=27, vision_heads=16, vision_mlp=4304,
                                hidden=4096, layers=32, heads=32, mlp=11008, vocab=32000,
                                max_text_tokens=32, proprio_dim=8, head_hidden=4096),
}


def tokenize(text: str, vocab: int, max_tokens: int):
    """Return (ids (max_tokens,), mask (max_tokens,)): lower-cased words hashed into vocab."""
    words = text.lower().split()[:max_tokens]
    ids = [1 + zlib.crc32(w.encode()) % (vocab - 1) for w in words]  # 0 is padding
    mask = [1.0] * len(ids) + [0.0] * (max_tokens - len(ids))
    return (torch.tensor(ids + [0] * (max_tokens - len(ids)), dtype=torch.long),
            torch.tensor(mask))


class ReferenceVLA(nn.Module):
    """The qvla-ref policy; implements the Policy protocol (qvla_ros.core.policy)."""

    def __init__(self, config: RefConfig, normalizer: Optional[ActionNormalizer] = None):
        super().__init__()
        from transformers import LlamaConfig, LlamaModel, SiglipVisionConfig, SiglipVisionModel
        c = self.config = config
        self.vision = SiglipVisionModel(SiglipVisionConfig(
            hidden_size=c.vision_hidden, intermediate_size=c.vision_mlp,
            num_hidden_layers=c.vision_layers, num_attention_heads=c.vision_heads,
            image_size=c.image_size, patch_size=c.patch_size, vision_use_head=False))
        self.projector = nn.Sequential(nn.Linear(c.vision_hidden, c.hidden), nn.GELU(),
                                       nn.Linear(c.hidden, c.hidden))
        llama = LlamaConfig(vocab_size=c.vocab, hidden_size=c.hidden, intermediate_size=c.mlp,
                            num_hidden_layers=c.layers, num_attention_heads=c.heads,
                            num_key_value_heads=c.heads, max_position_embeddings=c.num_tokens,
                            pad_token_id=0)
        llama._attn_implementation = 'sdpa'
        self.language = LlamaModel(llama)
        self.proprio_proj = nn.Linear(c.proprio_dim, c.hidden)
        if c.cameras:  # which camera a vision token came from
            self.camera_embed = nn.Parameter(torch.randn(len(c.cameras), c.hidden) * 0.02)
        # proprio standardisation, fitted by training and saved with the weights
        self.register_buffer('proprio_mean', torch.zeros(c.proprio_dim))
        self.register_buffer('proprio_std', torch.ones(c.proprio_dim))
        self.action_queries = nn.Parameter(torch.randn(c.chunk_size * c.action_dim, c.hidden)
                                           * 0.02)
        self.action_head = nn.Sequential(
            nn.LayerNorm(c.action_dim * c.hidden), nn.Linear(c.action_dim * c.hidden,
                                                             c.head_hidden),
            nn.GELU(), nn.Linear(c.head_hidden, c.action_dim))
        self.normalizer = normalizer or ActionNormalizer(
            np.full(c.action_dim, -1.0, np.float32), np.ones(c.action_dim, np.float32),
            np.ones(c.action_dim, bool))

    def quantizable_layers(self, include: tuple = ('vision', 'language')) -> Dict[str, nn.Linear]:
        """Return vision and language linears; projector and action head stay unquantized."""
        return {n: m for n, m in self.named_modules()
                if isinstance(m, nn.Linear) and n.split('.')[0] in include}

    def rotate_residual_(self, seed: int = 0, fold: bool = True) -> FrozenSet[str]:
        """Rotate the language model's residual stream (QuaRot), in place; same actions.

        The stream's producers (the projector's output, the token, proprio, camera and query
        embeddings) are rotated with it. Return the names of the linears that now read it
        (they need no online rotation). fold=False installs the structure only (loading).
        """
        writers = (self.projector[2], self.proprio_proj)
        rows = [self.action_queries] + ([self.camera_embed] if self.config.cameras else [])
        return rotate_llama_(self.language, seed, 'language', fold, writers, rows)[1]

    def action_tensor(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Return normalized actions (B, H, A), differentiable.

        batch: image float (B, 3, S, S) in [0, 1], or (B, N, 3, S, S) with N cameras, tokens
        long (B, T), mask float (B, T), proprio float (B, P).
        """
        return self.head(self.features(batch))

    def query_states(self, hidden: torch.Tensor) -> torch.Tensor:
        """Return the action-query part (B, H * A, D) of the backbone's states (B, N, D)."""
        return hidden[:, -self.action_queries.shape[0]:]

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Map the backbone's final states (B, N, D) to normalized actions (B, H, A)."""
        c = self.config
        q = self.query_states(hidden).reshape(-1, c.chunk_size, c.action_dim * c.hidden)
        return self.action_head(q)  # (B, H, A)

    def features(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the backbone's final states (B, N, D) over [vision, text, proprio, queries]."""
        vis = self._vision_tokens(batch['image'])  # (B, N x P, D)
        text = self.language.embed_tokens(batch['tokens'])  # (B, T, D)
        prop = (batch['proprio'] - self.proprio_mean) / self.proprio_std  # (B, P)
        prop = self.proprio_proj(prop).unsqueeze(1)  # (B, 1, D)
        queries = self.action_queries.unsqueeze(0).expand(vis.shape[0], -1, -1)  # (B, HA, D)
        tokens = torch.cat([vis, text, prop, queries], dim=1)  # (B, N, D)
        ones = torch.ones(vis.shape[0], vis.shape[1], device=vis.device)
        mask = torch.cat([ones, batch['mask'], ones[:, :1],
                          ones.new_ones(vis.shape[0], queries.shape[1])], dim=1)
        return self.language(inputs_embeds=tokens, attention_mask=mask).last_hidden_state

    def _vision_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """Return projected vision tokens (B, N x P, D) of (B, 3, S, S) or (B, N, 3, S, S)."""
        pixels = image * 2.0 - 1.0  # SigLIP expects [-1, 1]
        if pixels.ndim == 4:
            return self.projector(self.vision(pixel_values=pixels).last_hidden_state)
        b, n = pixels.shape[:2]
        out = self.vision(pixel_values=pixels.flatten(0, 1)).last_hidden_state  # (B N, P, Dv)
        vis = self.projector(out).unflatten(0, (b, n))  # (B, N, P, D)
        return (vis + self.camera_embed[None, :, None]).flatten(1, 2)

    def make_batch(self, obs: Observation) -> Dict[str, torch.Tensor]:
        """Convert one observation into a batch of size 1."""
        c = self.config
        ids, mask = tokenize(obs.instruction, c.vocab, c.max_text_tokens)
        image = images_tensor(obs, c.image_size, c.cameras) if c.cameras else \
            image_tensor(obs, c.image_size)
        return {'image': image, 'tokens': ids[None],
                'mask': mask[None], 'proprio': proprio_tensor(obs, c.proprio_dim)}

    @torch.no_grad()
    def predict(self, obs: Observation) -> ActionChunk:
        """Return the de-normalized (H, A) chunk for one observation."""
        normed = self.action_tensor(self.make_batch(obs))[0].clamp(-1, 1)
        actions = self.normalizer.unnormalize(normed.float().cpu().numpy())
        return ActionChunk(actions=actions.astype(np.float32), dt=1.0 / self.config.control_hz,
                           stamp_ns=obs.stamp_ns or time.time_ns(),
                           dimension_names=dimension_names(self.config.action_dim))

    def metadata(self) -> dict:
        """Return what nodes validate their parameters against."""
        c = self.config
        return {'action_dim': c.action_dim, 'chunk_size': c.chunk_size,
                'dimension_names': list(dimension_names(c.action_dim)),
                'image_size': c.image_size, 'control_hz': c.control_hz,
                'cameras': list(c.cameras), 'num_images': max(1, len(c.cameras)),
                'proprio_dim': c.proprio_dim, 'config': asdict(c)}


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Return fixed 2D sine-cosine position embeddings (grid * grid, dim), MAE-style.

    Half the channels encode the row, half the column, each as sin/cos at dim/4 frequencies.
    """
    if dim % 4:
        raise ValueError(f'sincos_2d needs dim divisible by 4, got {dim}')
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    pos = torch.arange(grid, dtype=torch.float32)
    rows, cols = torch.meshgrid(pos, pos, indexing='ij')
    parts = []
    for axis in (rows.flatten(), cols.flatten()):
        ang = axis[:, None] * omega[None]  # (G*G, dim/4)
        parts += [ang.sin(), ang.cos()]
    return torch.cat(parts, dim=1)  # (G*G, dim)


def build_reference(config: RefConfig, seed: int = 0,
                    normalizer: Optional[ActionNormalizer] = None) -> ReferenceVLA:
    """Return a deterministic random-init qvla-ref in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ReferenceVLA(config, normalizer)
    return model.eval()
