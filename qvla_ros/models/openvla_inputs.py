# Copyright 2026 qvla_ros authors. Apache-2.0.
"""OpenVLA's image preprocessing: resize, OFT's LIBERO centre crop, per-tower normalization.

Upstream works on uint8 PIL images: the processor's ``resize-naive`` strategy resizes with
PIL bicubic (antialiased); OFT's LIBERO evaluation first takes a centre crop of 90 % of the
area with ``tf.image.crop_and_resize`` (bilinear, corner-aligned sampling over the box) back
to the input size. Each step here ends on the uint8 grid as upstream's does. Camera images
go in order (third-person, then wrist), each through every vision tower: the pixel tensor is
(1, 3 x towers x images, S, S), the layout upstream's processor outputs concatenate.
"""

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from qvla_ros.models.upstream_vision import BackboneSpec, IMAGE_STATS

CROP_AREA = 0.9  # OFT's LIBERO evaluation (experiments/robot/openvla_utils.py)


def _uint8_grid(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round().clamp(0, 255) / 255.0


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Return (1, 3, size, size): antialiased bicubic as PIL resizes, on the uint8 grid."""
    if img.shape[2:] == (size, size):
        return img
    out = F.interpolate(img, size=(size, size), mode='bicubic', align_corners=False,
                        antialias=True)
    return _uint8_grid(out.clamp(0, 1))


def center_crop(img: torch.Tensor, area: float = CROP_AREA) -> torch.Tensor:
    """Return the centre crop of ``area`` of ``img`` (1, 3, H, W) resized back to H x W.

    tf.image.crop_and_resize: output pixel i samples y1 (H - 1) + i (y2 - y1) (H - 1) /
    (H - 1) bilinearly, the box centred with sides sqrt(area).
    """
    _, _, h, w = img.shape
    side = math.sqrt(area)
    lo, hi = (1 - side) / 2, (1 + side) / 2
    ys = (lo + (hi - lo) * torch.arange(h, dtype=torch.float64) / max(h - 1, 1)) * 2 - 1
    xs = (lo + (hi - lo) * torch.arange(w, dtype=torch.float64) / max(w - 1, 1)) * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing='ij')[::-1], -1)  # (H, W, 2) as (x, y)
    out = F.grid_sample(img.double(), grid[None], mode='bilinear', align_corners=True)
    return _uint8_grid(out.float().clamp(0, 1))


def image_pixels(image: np.ndarray, backbones: Sequence[BackboneSpec],
                 crop: bool) -> torch.Tensor:
    """Return one camera image as (1, 3 x towers, S, S), normalized per tower."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'expected a uint8 (H, W, 3) image, got {image.dtype} '
                         f'{tuple(image.shape)}')
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None] / 255
    first = resize(img, backbones[0].image_size)
    if crop:
        first = center_crop(first)
    pixels = []
    for spec in backbones:
        x = resize(first, spec.image_size)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGE_STATS[spec.family])
        pixels.append((x - mean) / std)
    return torch.cat(pixels, 1)


def camera_pixels(images: dict, backbones: Sequence[BackboneSpec], num_images: int,
                  crop: bool) -> torch.Tensor:
    """Return the pixels of every camera, in the observation's order; check the count."""
    if len(images) != num_images:
        raise ValueError(f'the model takes {num_images} camera image(s) (third-person first, '
                         f'then wrist), got {len(images)}: {list(images)}')
    return torch.cat([image_pixels(img, backbones, crop) for img in images.values()], 1)
