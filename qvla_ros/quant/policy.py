# Copyright 2026 qvla_ros authors. Apache-2.0.
"""What quant needs from a model, and generic helpers over batches and layer I/O.

A policy is any object with ``action_tensor(batch) -> (B, H, A)`` (differentiable, normalized
action space) and ``quantizable_layers() -> {name: nn.Linear}``: ``QuantPolicy`` of
qvla_ros.core.policy. Batches are dicts of tensors whose first dimension is the sample index.
"""

from contextlib import contextmanager
from typing import Callable, Iterable, List

import torch
from torch import nn

from qvla_ros.core.policy import (  # noqa: F401 (quant's names for them)
    Batch, QuantPolicy, ResidualRotatable)


def collate(batches: Iterable[Batch]) -> Batch:
    """Concatenate batches along the sample dimension; keys must agree."""
    batches = list(batches)
    if not batches:
        raise ValueError('no calibration samples: expected at least one batch')
    keys = set(batches[0])
    for b in batches[1:]:
        if set(b) != keys:
            raise ValueError(f'batch keys differ: {sorted(keys)} vs {sorted(b)}')
    return {k: torch.cat([b[k] for b in batches]) for k in sorted(keys)}


def batch_size(batch: Batch) -> int:
    """Return the number of samples in ``batch``."""
    sizes = {v.shape[0] for v in batch.values()}
    if len(sizes) != 1:
        raise ValueError(f'batch tensors disagree on the sample dimension: {sorted(sizes)}')
    return sizes.pop()


def repeat_batch(batch: Batch, times: int) -> Batch:
    """Return ``batch`` tiled ``times`` along the sample dimension (replica-major)."""
    return {k: v.repeat(times, *([1] * (v.ndim - 1))) for k, v in batch.items()}


def split_batch(batch: Batch, size: int) -> List[Batch]:
    """Split ``batch`` into consecutive batches of at most ``size`` samples."""
    n = batch_size(batch)
    return [{k: v[i:i + size] for k, v in batch.items()} for i in range(0, n, size)]


@contextmanager
def hooked(module: nn.Module, hook: Callable):
    """Register ``hook`` as a forward hook for the duration of the block."""
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def capture_io(policy: QuantPolicy, layer: nn.Module, batch: Batch):
    """Return (input (B, ..., K), output (B, ..., N)) of ``layer`` for ``batch``, no grad."""
    store = {}

    def hook(mod, args, out):
        store['x'] = args[0].detach()
        store['y'] = out.detach()
    with torch.no_grad(), hooked(layer, hook):
        policy.action_tensor(batch)
    if 'x' not in store:
        raise ValueError('the layer was not called by action_tensor; is it part of the model?')
    return store['x'], store['y']
