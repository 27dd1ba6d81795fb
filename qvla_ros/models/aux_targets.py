# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Auxiliary localization targets for behaviour cloning from scratch: colour-blob centroids.

Why: from scratch, the action loss alone did not teach a small qvla-ref to find the
instructed block (docs/history.md); pretrained VLAs get localization from vision pre-training.
This module derives a dense, label-free localization signal from the training frames
themselves: for each reference colour, the image centroid of the pixels whose colour channel
dominates the other two. A training-only linear head
regresses, from the mean of the backbone's action-query states (what the action head reads),
the centroid of every colour and of the colours in the order the instruction mentions them.

Reading the instruction is the hard part, and real samples offer a shortcut: after the first
few steps the mentioned block is simply the one next to the gripper. So training adds
counterfactual samples, a frame paired with the instruction of another random sample, on which
only this loss is applied: there the mentioned blob is unrelated to the gripper and only the
colour word tells where it is. The head is not part of
the policy: the exported checkpoint, its inputs and its quantization are unchanged.

Target layout per frame (K = 2 C + 2 M values, image coordinates in [-1, 1], x right, y down):
``[u_1, v_1, ..., u_C, v_C`` for the colours in ``COLORS`` order, then the same for the first
``M`` colours mentioned in the instruction]; a mask marks the values that exist (a colour with
fewer than ``min_pixels`` pixels, or a mention that is missing, is masked out).
"""

from typing import List, Tuple

import numpy as np
import torch

# colour word -> the RGB channel that dominates its pixels
COLORS = {'red': 0, 'green': 1, 'blue': 2}
MENTIONS = 2


def dominant_masks(images: np.ndarray, margin: int = 40) -> np.ndarray:
    """Return bool (N, C, H, W): channel c exceeds both other channels by > ``margin``.

    images: uint8 (N, H, W, 3).
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f'expected uint8 images (N, H, W, 3), got {images.dtype} '
                         f'{images.shape}')
    x = images.astype(np.int16)
    out = []
    for c in COLORS.values():
        others = [i for i in range(3) if i != c]
        out.append(x[..., c] - np.maximum(x[..., others[0]], x[..., others[1]]) > margin)
    return np.stack(out, axis=1)


def centroids(images: np.ndarray, min_pixels: int = 10,
              chunk: int = 2048) -> Tuple[np.ndarray, np.ndarray]:
    """Return (uv float32 (N, C, 2) in [-1, 1], present bool (N, C)) of each colour's blob."""
    n, h, w, _ = images.shape
    u = (np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1  # (W,)
    v = (np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1  # (H,)
    uv = np.zeros((n, len(COLORS), 2), np.float32)
    present = np.zeros((n, len(COLORS)), bool)
    for start in range(0, n, chunk):
        m = dominant_masks(images[start:start + chunk]).astype(np.float32)  # (n, C, H, W)
        count = m.sum(axis=(2, 3))  # (n, C)
        safe = np.maximum(count, 1.0)
        uv[start:start + chunk, :, 0] = (m.sum(axis=2) * u).sum(-1) / safe
        uv[start:start + chunk, :, 1] = (m.sum(axis=3) * v).sum(-1) / safe
        present[start:start + chunk] = count >= min_pixels
    return uv, present


def mention_order(instruction: str, limit: int = MENTIONS) -> List[int]:
    """Return the indices into ``COLORS`` of the colour words, in order of mention."""
    names = list(COLORS)
    found = [names.index(w) for w in instruction.lower().replace(',', ' ').split()
             if w in COLORS]
    return found[:limit]


def mention_indices(instruction: str) -> np.ndarray:
    """Return int64 (MENTIONS,): ``mention_order`` padded with -1."""
    found = mention_order(instruction)
    return np.array(found + [-1] * (MENTIONS - len(found)), np.int64)


def compose(uv: torch.Tensor, present: torch.Tensor,
            mentions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return (values (B, K), mask (B, K)) from centroids and mention indices.

    uv: (B, C, 2) float; present: (B, C) bool; mentions: (B, MENTIONS) long, -1 for none.
    The frame and the instruction may come from different samples (counterfactual
    instructions: the mentioned blob is then not the one near the gripper, so the only way to
    predict it is to read the colour word).
    """
    safe = mentions.clamp_min(0)
    m_uv = torch.gather(uv, 1, safe[..., None].expand(-1, -1, 2))  # (B, MENTIONS, 2)
    m_ok = torch.gather(present, 1, safe) & (mentions >= 0)  # (B, MENTIONS)
    vals = torch.cat([uv, m_uv], dim=1)  # (B, C + MENTIONS, 2)
    mask = torch.cat([present, m_ok], dim=1)[..., None].expand_as(vals)
    return vals.flatten(1), mask.flatten(1).float()


def num_targets() -> int:
    """Return K, the number of auxiliary values per frame."""
    return 2 * (len(COLORS) + MENTIONS)
