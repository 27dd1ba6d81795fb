# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Observation -> tensor conversions shared by every model adapter."""

import numpy as np
import torch
import torch.nn.functional as F

from qvla_ros.core.types import Observation

EE_DELTA_NAMES = ('x', 'y', 'z', 'roll', 'pitch', 'yaw', 'gripper')


def image_tensor(obs: Observation, size: int) -> torch.Tensor:
    """Return the first camera's image as float (1, 3, size, size) in [0, 1]."""
    if not obs.images:
        raise ValueError('observation has no image; the policy needs one camera')
    image = next(iter(obs.images.values()))
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'expected a uint8 (H, W, 3) image, got {image.dtype} '
                         f'{tuple(image.shape)}')
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None] / 255.0
    if img.shape[2:] != (size, size):
        img = F.interpolate(img, size=(size, size), mode='bilinear', align_corners=False)
    return img


def images_tensor(obs: Observation, size: int, cameras) -> torch.Tensor:
    """Return the images of ``cameras``, in that order, as float (1, N, 3, size, size).

    Every named camera must be in the observation; others are ignored.
    """
    missing = [c for c in cameras if c not in obs.images]
    if missing:
        raise ValueError(f'the policy needs cameras {list(cameras)}; the observation has '
                         f'{sorted(obs.images)} (missing {missing})')
    return torch.cat([image_tensor(Observation({c: obs.images[c]}, obs.instruction), size)
                      for c in cameras])[None]


def proprio_tensor(obs: Observation, dim: int) -> torch.Tensor:
    """Return proprio as float (1, dim): truncated or zero-padded to ``dim``."""
    proprio = np.zeros(dim, np.float32)
    n = min(dim, obs.proprio.size)
    proprio[:n] = obs.proprio.reshape(-1)[:n]
    return torch.from_numpy(proprio)[None]


def dimension_names(action_dim: int) -> tuple:
    """Return the end-effector delta names for 7-D actions, else no names."""
    return EE_DELTA_NAMES if action_dim == len(EE_DELTA_NAMES) else ()
