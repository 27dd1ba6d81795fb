# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Warm starts of qvla-ref training: load a float checkpoint, widen its proprio, add cameras.

A later training stage continues an earlier model. What may change is what the model reads:
more proprio values (the new inputs start at zero, or at the old inputs' scale) and named
cameras added to a single-camera model (each with a fresh embedding; the one vision tower
serves them all). Everything else must match.
"""

from dataclasses import asdict, replace
from pathlib import Path

import torch

from qvla_ros.kernels.linear import MixedBitLinear
from qvla_ros.models.checkpoint import load_policy
from qvla_ros.models.reference import RefConfig
from qvla_ros.models.reference import ReferenceVLA

WIDEN_INITS = ('zero', 'matched')


def warm_start(folder: str, config: RefConfig) -> torch.nn.Module:
    """Load the float qvla-ref checkpoint at ``folder``; its config must equal ``config``."""
    if not (Path(folder) / 'model.safetensors').is_file():
        raise ValueError(f'--init expects a qvla-ref checkpoint folder with model.safetensors, '
                         f'got {folder!r}')
    model = load_policy(folder)
    if not isinstance(model, ReferenceVLA) or any(
            isinstance(m, MixedBitLinear) for m in model.modules()):
        raise ValueError(f'--init {folder!r} must be a float qvla-ref checkpoint, got '
                         f'{type(model).__name__} (quantized checkpoints cannot be trained)')
    cameras = config.cameras if not model.config.cameras else model.config.cameras
    widened = replace(model.config, proprio_dim=config.proprio_dim, cameras=cameras)
    if asdict(widened) != asdict(config) or model.config.proprio_dim > config.proprio_dim:
        raise ValueError(f'--init {folder!r} has config {asdict(model.config)}; training '
                         f'asked for {asdict(config)} (only proprio_dim may grow, and a '
                         'single-camera model may gain named cameras)')
    return model.float()


def add_cameras(model: torch.nn.Module, config: RefConfig, seed: int = 0) -> torch.nn.Module:
    """Return ``model`` reading ``config.cameras``; itself if it already does.

    A single-camera model gains named cameras: its weights are kept (the one vision tower
    serves every camera) and each camera gets a fresh embedding, seeded by ``seed``.
    """
    if model.config.cameras == config.cameras:
        return model
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        wide = ReferenceVLA(config, model.normalizer)
    missing, unexpected = wide.load_state_dict(model.state_dict(), strict=False)
    if unexpected or set(missing) != {'camera_embed'}:
        raise ValueError(f'cannot add cameras: missing {missing}, unexpected {unexpected}')
    return wide


def widen_proprio(model: torch.nn.Module, config: RefConfig, proprio: torch.Tensor,
                  init: str = 'zero', seed: int = 0) -> torch.nn.Module:
    """Return ``model`` taking ``config.proprio_dim`` proprio values; itself if unchanged.

    The old inputs keep their weights and standardisation. The new ones get mean/std fitted
    on ``proprio`` (N, config.proprio_dim), the training samples, and weights in
    ``proprio_proj`` by ``init``: 'zero' (every output is what it was) or 'matched' (normal,
    seeded by ``seed``, with the standard deviation of the old inputs' weights).
    """
    old = model.config.proprio_dim
    if old == config.proprio_dim:
        return model
    wide = ReferenceVLA(config, model.normalizer)
    state = model.state_dict()
    if init not in WIDEN_INITS:
        raise ValueError(f'init must be one of {WIDEN_INITS}, got {init!r}')
    if init == 'matched' and old == 0:
        raise ValueError('matched widening takes its scale from the old proprio inputs; this '
                         "model has none (use init 'zero')")
    weight = torch.zeros(config.hidden, config.proprio_dim)  # (D, P_new)
    weight[:, :old] = state['proprio_proj.weight']
    if init == 'matched':
        gen = torch.Generator().manual_seed(seed)
        scale = weight[:, :old].float().std()
        weight[:, old:] = torch.randn(config.hidden, config.proprio_dim - old,
                                      generator=gen) * scale
    mean, std = proprio.mean(0), proprio.std(0).clamp_min(1e-3)  # (P_new,)
    mean[:old], std[:old] = state['proprio_mean'], state['proprio_std']
    state.update({'proprio_proj.weight': weight, 'proprio_mean': mean, 'proprio_std': std})
    wide.load_state_dict(state)
    return wide
