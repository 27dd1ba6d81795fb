# Copyright 2026 qvla_ros authors. Apache-2.0.
"""A tiny VLA-shaped policy for tests and the foundation demo.

Vision MLP over a pooled image, a hashed bag-of-words instruction encoder, a small trunk and
an L1-style action head that emits an (H, A) chunk in one pass. Random weights are fine: it
exercises the same Policy protocol (qvla_ros.core.policy) as the reference VLA.
"""

from dataclasses import asdict, dataclass
import time
from typing import Dict, Tuple
import zlib

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from qvla_ros.core.types import ActionChunk, check_version, Observation
from qvla_ros.models.inputs import dimension_names, image_tensor, proprio_tensor


@dataclass(frozen=True)
class ToyConfig:
    """Sizes of the toy policy (it reads the observation's first image)."""

    image_size: int = 64
    pooled: int = 16
    hidden: int = 64
    vocab_buckets: int = 512
    proprio_dim: int = 8
    action_dim: int = 7
    chunk_size: int = 8
    control_hz: float = 10.0
    version: int = 1

    def __post_init__(self):
        check_version('ToyConfig', self.version)
        for name in ('image_size', 'pooled', 'hidden', 'vocab_buckets', 'action_dim',
                     'chunk_size'):
            if getattr(self, name) < 1:
                raise ValueError(f'ToyConfig.{name} must be >= 1, got {getattr(self, name)}')
        if self.control_hz <= 0:
            raise ValueError(f'ToyConfig.control_hz must be > 0, got {self.control_hz}')


def tokenize(text: str, buckets: int, max_tokens: int = 16) -> Tuple[torch.Tensor, int]:
    """Hash lower-cased words into ``buckets`` ids; return (ids (max_tokens,), count)."""
    words = text.lower().split()[:max_tokens]
    ids = [zlib.crc32(w.encode()) % buckets for w in words]
    padded = ids + [0] * (max_tokens - len(ids))
    return torch.tensor(padded, dtype=torch.long), len(ids)


class ToyPolicy(nn.Module):
    """Tiny random-init VLA-shaped policy (vision, language, trunk, action head)."""

    def __init__(self, config: ToyConfig = ToyConfig()):
        super().__init__()
        self.config = config
        c = config
        self.vision = nn.Sequential(
            nn.Linear(3 * c.pooled * c.pooled, c.hidden), nn.GELU(),
            nn.Linear(c.hidden, c.hidden))
        self.embed = nn.Embedding(c.vocab_buckets, c.hidden)
        self.language = nn.Sequential(
            nn.Linear(2 * c.hidden + c.proprio_dim, 2 * c.hidden), nn.GELU(),
            nn.Linear(2 * c.hidden, c.hidden))
        self.action_head = nn.Linear(c.hidden, c.chunk_size * c.action_dim)
        self.register_buffer('action_low', -torch.ones(c.action_dim) * 0.05)
        self.register_buffer('action_high', torch.ones(c.action_dim) * 0.05)

    def quantizable_layers(self) -> Dict[str, nn.Linear]:
        """Return the vision and language linears; the action head stays unquantized."""
        return {name: mod for name, mod in self.named_modules()
                if isinstance(mod, nn.Linear) and name.split('.')[0] in ('vision', 'language')}

    def action_tensor(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Return normalized actions (B, H, A) in [-1, 1]; differentiable.

        batch: image float (B, 3, S, S) in [0, 1], tokens long (B, T), mask float (B, T),
        proprio float (B, P).
        """
        c = self.config
        img = F.adaptive_avg_pool2d(batch['image'], c.pooled).flatten(1)  # (B, 3*p*p)
        v = self.vision(img)  # (B, D)
        emb = self.embed(batch['tokens']) * batch['mask'].unsqueeze(-1)  # (B, T, D)
        t = emb.sum(1) / batch['mask'].sum(1, keepdim=True).clamp(min=1.0)  # (B, D)
        h = self.language(torch.cat([v, t, batch['proprio']], dim=-1))  # (B, D)
        out = torch.tanh(self.action_head(h))  # (B, H*A)
        return out.view(-1, c.chunk_size, c.action_dim)

    def make_batch(self, obs: Observation) -> Dict[str, torch.Tensor]:
        """Convert one observation into a batch of size 1 for :meth:`action_tensor`."""
        c = self.config
        tokens, count = tokenize(obs.instruction, c.vocab_buckets)
        mask = (torch.arange(tokens.numel()) < count).float()
        return {'image': image_tensor(obs, c.image_size), 'tokens': tokens[None],
                'mask': mask[None], 'proprio': proprio_tensor(obs, c.proprio_dim)}

    def unnormalize(self, actions: torch.Tensor) -> torch.Tensor:
        """Map normalized actions in [-1, 1] to the q01/q99 bounds (OpenVLA BOUNDS_Q99)."""
        low, high = self.action_low, self.action_high
        return 0.5 * (actions + 1.0) * (high - low) + low

    @torch.no_grad()
    def predict(self, obs: Observation) -> ActionChunk:
        """Return a de-normalized (H, A) chunk for one observation."""
        norm = self.action_tensor(self.make_batch(obs))[0]
        actions = self.unnormalize(norm).numpy().astype(np.float32)
        return ActionChunk(actions=actions, dt=1.0 / self.config.control_hz,
                           stamp_ns=obs.stamp_ns or time.time_ns(),
                           dimension_names=dimension_names(self.config.action_dim))

    def metadata(self) -> dict:
        """Return the model metadata that nodes validate their parameters against."""
        c = self.config
        return {'action_dim': c.action_dim, 'chunk_size': c.chunk_size,
                'dimension_names': list(dimension_names(c.action_dim)),
                'image_size': c.image_size, 'control_hz': c.control_hz,
                'cameras': [], 'num_images': 1, 'proprio_dim': c.proprio_dim,
                'config': asdict(c)}


def build_toy_policy(seed: int = 0, config: ToyConfig = ToyConfig()) -> ToyPolicy:
    """Return a deterministic random-init toy policy in eval mode."""
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        policy = ToyPolicy(config)
    return policy.eval()
