# Copyright 2026 qvla_ros authors. Apache-2.0.
"""OpenVLA and OpenVLA-OFT from a local Hugging Face folder, without remote code or pickle.

The upstream folder (openvla/openvla-7b, OpenVLA-OFT fine-tunes) holds ``config.json``
(OpenVLAConfig), ``model*.safetensors`` (``vision_backbone.featurizer.*`` and
``.fused_featurizer.*`` timm ViTs, ``projector.fc1..fc3``, ``language_model.model.*``,
``language_model.lm_head.weight``), the Llama tokenizer files, norm stats in
``dataset_statistics.json`` or the config, and for OFT ``action_head--*checkpoint.pt`` /
``proprio_projector--*checkpoint.pt`` (read with ``torch.load(weights_only=True)``, which
executes no code) or ``.safetensors`` equivalents.

Two action paths, as upstream:

* ``discrete`` (OpenVLA): the prompt ``In: What action should the robot take to
  {instruction}?<newline>Out:`` plus token 29871, greedy decoding of A tokens; token t maps to bin
  centre ``vocab - t - 1`` of linspace(-1, 1, n_bins). ``action_tensor`` (for sensitivity)
  teacher-forces the greedy tokens and returns the softmax-expected bin centre over the
  n_bins - 1 action tokens, a differentiable stand-in for the argmax.
* ``l1`` (OFT): H x A zero-embedded placeholder tokens and a stop token after the prompt, one
  forward with bidirectional attention (the transformers fork OFT pins sets
  ``is_causal=False``); the hidden states from the last prompt token on (upstream's
  ``NUM_PATCHES + NUM_PROMPT_TOKENS`` slice) go through the MLPResNet L1 head, (B, H, A).
  Proprio (normalized as upstream ``normalize_proprio``) becomes one token after the patches.
  Each of 1-3 camera images adds its patches through every tower, in order; with FiLM (OFT+)
  the towers are conditioned on the mean embedding of the prompt and stop tokens.

Actions are unnormalized by :class:`BoundsNormalizer`, upstream's formulas (no clipping).
"""

from dataclasses import asdict, dataclass
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from qvla_ros.core.types import ActionChunk, check_version, Observation
from qvla_ros.models.inputs import dimension_names
from qvla_ros.models.normalization import BoundsNormalizer, NORMALIZATION_TYPES
from qvla_ros.models.openvla_config import ATTENTION
from qvla_ros.models.openvla_inputs import camera_pixels
from qvla_ros.models.upstream_vision import BackboneSpec, build_backbone, FiLM, patch_features

PROMPT = 'In: What action should the robot take to {}?\nOut:'
EMPTY_TOKEN, STOP_TOKEN, PLACEHOLDER_TOKEN = 29871, 2, 1


@dataclass(frozen=True)
class OpenVLAConfig:
    """Everything needed to rebuild an upstream policy; see :func:`load_openvla`."""

    variant: str                       # 'discrete' | 'l1'
    backbones: Tuple[BackboneSpec, ...]
    llm: dict                          # LlamaConfig fields
    n_action_bins: int = 256
    vocab_size: int = 32000            # text vocab minus pad_to_multiple_of
    action_dim: int = 7
    chunk_size: int = 1
    proprio_dim: int = 0
    head_hidden: int = 0
    control_hz: float = 10.0
    num_images: int = 1
    attention: str = 'causal'
    normalization: str = 'bounds_q99'
    center_crop: bool = False
    film: bool = False
    version: int = 1

    def __post_init__(self):
        check_version('OpenVLAConfig', self.version)
        if self.variant not in ('discrete', 'l1'):
            raise ValueError(f"variant must be 'discrete' or 'l1', got {self.variant!r}")
        if not 1 <= len(self.backbones) <= 2:
            raise ValueError('expected one or two (fused) vision backbones')
        if self.variant == 'discrete' and self.chunk_size != 1:
            raise ValueError('discrete OpenVLA predicts one action per step (chunk_size 1)')
        if not 1 <= self.num_images <= 3 or (self.num_images > 1 and len(self.backbones) < 2):
            raise ValueError(f'num_images must be 1-3, and more than 1 needs the fused vision '
                             f'backbone (as upstream); got {self.num_images}')
        if self.attention not in ATTENTION:
            raise ValueError(f'attention must be one of {ATTENTION}, got {self.attention!r}')
        if self.normalization not in NORMALIZATION_TYPES:
            raise ValueError(f'normalization must be one of {sorted(NORMALIZATION_TYPES)}, '
                             f'got {self.normalization!r}')


class MLPResNet(nn.Module):
    """OFT's L1 head body: LN, fc1, ReLU, residual (LN, Linear, ReLU) blocks, LN, fc2."""

    def __init__(self, blocks: int, d_in: int, hidden: int, d_out: int):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(d_in)
        self.fc1 = nn.Linear(d_in, hidden)
        self.mlp_resnet_blocks = nn.ModuleList(
            nn.ModuleDict({'ffn': nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden),
                                                nn.ReLU())}) for _ in range(blocks))
        self.layer_norm2 = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map x (..., d_in) to (..., d_out)."""
        x = torch.relu(self.fc1(self.layer_norm1(x)))
        for block in self.mlp_resnet_blocks:
            x = x + block['ffn'](x)
        return self.fc2(self.layer_norm2(x))


class OpenVLAPolicy(nn.Module):
    """An upstream OpenVLA / OFT policy behind the Policy protocol (qvla_ros.core.policy)."""

    def __init__(self, config: OpenVLAConfig, normalizer: BoundsNormalizer, tokenizer=None,
                 proprio_normalizer: Optional[BoundsNormalizer] = None):
        super().__init__()
        from transformers import LlamaConfig, LlamaModel
        c = self.config = config
        self.normalizer, self.proprio_normalizer = normalizer, proprio_normalizer
        self.tokenizer = tokenizer
        self.vision = nn.ModuleList(build_backbone(s) for s in c.backbones)
        vdim = sum(s.hidden for s in c.backbones)
        d = c.llm['hidden_size']
        fused = len(c.backbones) == 2
        dims = [vdim, 4 * vdim, d, d] if fused else [vdim, d, d]
        self.projector = nn.ModuleDict({f'fc{i + 1}': nn.Linear(a, b)
                                        for i, (a, b) in enumerate(zip(dims, dims[1:]))})
        llama = LlamaConfig(**c.llm)
        llama._attn_implementation = 'sdpa'
        self.language = LlamaModel(llama)
        self.lm_head = nn.Linear(d, c.llm['vocab_size'], bias=False)
        if c.variant == 'l1':
            self.action_head = MLPResNet(2, d * c.action_dim, c.head_hidden, c.action_dim)
        if c.proprio_dim:
            self.proprio_projector = nn.ModuleDict({'fc1': nn.Linear(c.proprio_dim, d),
                                                    'fc2': nn.Linear(d, d)})
        if c.film:
            self.film = nn.ModuleList(FiLM(s.depth - 1, d, s.hidden) for s in c.backbones)
        bins = np.linspace(-1, 1, c.n_action_bins)
        self.bin_centers_np = (bins[:-1] + bins[1:]) / 2  # (n_bins - 1,) float64, as upstream

    # -- policy interface --------------------------------------------------------------------
    def quantizable_layers(self, include: tuple = ('vision', 'language')) -> Dict[str, nn.Linear]:
        """Return vision and language linears; projector, heads and lm_head stay FP."""
        return {n: m for n, m in self.named_modules()
                if isinstance(m, nn.Linear) and n.split('.')[0] in include}

    def metadata(self) -> dict:
        """Return what nodes validate their parameters against."""
        c = self.config
        return {'action_dim': c.action_dim, 'chunk_size': c.chunk_size,
                'dimension_names': list(dimension_names(c.action_dim)),
                'image_size': c.backbones[0].image_size, 'control_hz': c.control_hz,
                'cameras': [], 'num_images': c.num_images, 'proprio_dim': c.proprio_dim,
                'config': asdict(c)}

    @staticmethod
    def collate(batches: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """Concatenate batches of different prompt lengths (left padding)."""
        return collate_left(batches)

    def make_batch(self, obs: Observation) -> Dict[str, torch.Tensor]:
        """Preprocess one observation as the upstream processor does (batch of 1)."""
        c = self.config
        if self.tokenizer is None:
            raise ValueError('this OpenVLA policy has no tokenizer; load it with load_openvla')
        pixels = camera_pixels(obs.images, c.backbones, c.num_images, c.center_crop)
        ids = self.tokenizer(PROMPT.format(obs.instruction.lower()))['input_ids']
        if ids[-1] != EMPTY_TOKEN:
            ids = ids + [EMPTY_TOKEN]
        batch = {'pixels': pixels, 'tokens': torch.tensor([ids]), 'mask': torch.ones(1, len(ids))}
        if c.proprio_dim:
            if obs.proprio.size != c.proprio_dim:
                raise ValueError(f'the model takes {c.proprio_dim} proprio values, got '
                                 f'{obs.proprio.size}')
            p = obs.proprio.reshape(-1).astype(np.float64)
            if self.proprio_normalizer is not None:
                p = self.proprio_normalizer.normalize(p)
            batch['proprio'] = torch.from_numpy(p.astype(np.float32))[None]
        return batch

    # -- forward -----------------------------------------------------------------------------
    def _patches(self, batch, language: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Return projected patch tokens (B, images x P (+1 proprio), D).

        ``language`` (B, D): the mean prompt embedding FiLM conditions the towers on.
        """
        towers = len(self.vision)
        chans = torch.split(batch['pixels'], 3, dim=1)  # (image, tower) in that order
        films = self.film if self.config.film else [None] * towers
        feats = torch.cat([torch.cat([patch_features(m, s, chans[i * towers + j], f, language)
                                      for j, (m, s, f) in enumerate(
                                          zip(self.vision, self.config.backbones, films))],
                                     dim=2)
                           for i in range(len(chans) // towers)], dim=1)
        p = self.projector
        h = p['fc2'](F.gelu(p['fc1'](feats)))
        if 'fc3' in p:
            h = p['fc3'](F.gelu(h))
        if self.config.proprio_dim:
            pp = self.proprio_projector
            prop = pp['fc2'](F.gelu(pp['fc1'](batch['proprio'].to(h.dtype))))  # (B, D)
            h = torch.cat([h, prop[:, None]], dim=1)
        return h

    def _run(self, patches, tokens, mask, zero_tail: int = 0):
        """Left-padded [BOS, patches, rest] through Llama; return the last hidden states."""
        emb = self.language.embed_tokens(tokens)  # (B, T, D)
        if zero_tail:
            keep = torch.ones(tokens.shape[1], 1, dtype=emb.dtype, device=emb.device)
            keep[-zero_tail:] = 0
            keep[-1] = 1  # the stop token keeps its embedding
            emb = emb * keep
        first = mask.argmax(1)  # index of BOS per row (left padding)
        rows = []
        for b in range(tokens.shape[0]):
            f = int(first[b])
            rows.append(torch.cat([emb[b, :f + 1], patches[b], emb[b, f + 1:]]))
        x = torch.stack(rows)  # (B, N, D)
        m = torch.stack([torch.cat([mask[b, :int(first[b]) + 1],
                                    mask.new_ones(patches.shape[1]),
                                    mask[b, int(first[b]) + 1:]]) for b in range(len(rows))])
        pos = (m.cumsum(1) - 1).clamp(min=0).long()
        if self.config.attention == 'bidirectional':  # every token sees every unpadded one
            m = (m[:, None, None, :] > 0).expand(-1, 1, m.shape[1], -1)
        return self.language(inputs_embeds=x, attention_mask=m,
                             position_ids=pos).last_hidden_state

    def _language_mean(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Return the mean embedding (B, D) of the prompt and stop tokens (FiLM's input)."""
        emb = self.language.embed_tokens(tokens)  # (B, T, D)
        stop = self.language.embed_tokens(torch.full_like(tokens[:, :1], STOP_TOKEN))
        w = mask.to(emb.dtype)[..., None]
        return ((emb * w).sum(1) + stop[:, 0]) / (w.sum(1) + 1)

    def _greedy(self, patches, tokens, mask) -> torch.Tensor:
        """Return A greedily decoded tokens (B, A) over the full vocabulary, as generate()."""
        out = []
        with torch.no_grad():
            for _ in range(self.config.action_dim):
                h = self._run(patches, tokens, mask)[:, -1]
                nxt = self.lm_head(h).argmax(-1, keepdim=True)  # (B, 1)
                out.append(nxt)
                tokens = torch.cat([tokens, nxt], 1)
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        return torch.cat(out, 1)

    def action_tensor(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Return normalized actions (B, H, A), differentiable (see the module docstring)."""
        c = self.config
        tokens, mask = batch['tokens'], batch['mask']
        patches = self._patches(batch, self._language_mean(tokens, mask) if c.film else None)
        b = tokens.shape[0]
        if c.variant == 'l1':
            n_act = c.chunk_size * c.action_dim
            tail = torch.full((b, n_act + 1), PLACEHOLDER_TOKEN, dtype=tokens.dtype)
            tail[:, -1] = STOP_TOKEN
            h = self._run(patches, torch.cat([tokens, tail], 1),
                          torch.cat([mask, mask.new_ones(b, n_act + 1)], 1), n_act + 1)
            start = h.shape[1] - (n_act + 1) - 1  # the last prompt token
            acts = h[:, start:start + n_act].reshape(b, c.chunk_size, -1)
            return self.action_head(acts)  # (B, H, A)
        greedy = batch['greedy'] if 'greedy' in batch else self._greedy(patches, tokens, mask)
        full = torch.cat([tokens, greedy[:, :-1]], 1)
        h = self._run(patches, full, torch.cat([mask, mask.new_ones(b, greedy.shape[1] - 1)], 1))
        logits = self.lm_head(h[:, -c.action_dim:])  # (B, A, V)
        centers = torch.as_tensor(self.bin_centers_np, dtype=torch.float32, device=h.device)
        nb = centers.numel()
        # token vocab - 1 - i <-> bin i, i = 0..nb-1
        action_logits = logits[..., c.vocab_size - nb:c.vocab_size].flip(-1)
        probs = action_logits.float().softmax(-1)
        return (probs @ centers)[:, None]  # (B, 1, A)

    @torch.no_grad()
    def predict(self, obs: Observation) -> ActionChunk:
        """Return the de-normalized (H, A) chunk for one observation."""
        c = self.config
        batch = self.make_batch(obs)
        if c.variant == 'l1':
            normed = self.action_tensor(batch)[0].float().cpu().numpy()
        else:
            greedy = self._greedy(self._patches(batch), batch['tokens'], batch['mask'])
            idx = np.clip(c.vocab_size - greedy[0].cpu().numpy() - 1, 0,
                          self.bin_centers_np.size - 1)
            normed = self.bin_centers_np[idx][None]
        actions = self.normalizer.unnormalize(normed)
        return ActionChunk(actions=actions.astype(np.float32), dt=1.0 / c.control_hz,
                           stamp_ns=obs.stamp_ns or time.time_ns(),
                           dimension_names=dimension_names(c.action_dim))


def collate_left(batches: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Concatenate OpenVLA batches, left-padding tokens (pad id 0, mask 0)."""
    width = max(b['tokens'].shape[1] for b in batches)
    out = {'pixels': torch.cat([b['pixels'] for b in batches])}
    pad = lambda t, v: F.pad(t, (width - t.shape[1], 0), value=v)  # noqa: E731
    out['tokens'] = torch.cat([pad(b['tokens'], 0) for b in batches])
    out['mask'] = torch.cat([pad(b['mask'], 0.0) for b in batches])
    if 'proprio' in batches[0]:
        out['proprio'] = torch.cat([b['proprio'] for b in batches])
    return out
