# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The policy interface every model implements and every layer above relies on.

Quantization needs only :class:`QuantPolicy` (normalized actions from a batch, and the linears
it may replace); the runtime, the simulator and the ROS node also need :class:`Policy`'s
``make_batch``, ``predict`` and ``metadata``. ``qvla_ros.models`` has three implementations:
the toy policy, qvla-ref and upstream OpenVLA / OFT; docs/extending.md shows how to add one.
"""

from typing import Dict, FrozenSet, Protocol, runtime_checkable

import torch
from torch import nn

from qvla_ros.core.types import ActionChunk, Observation

Batch = Dict[str, torch.Tensor]  # every tensor's first dimension is the sample index
# Keys of ``Policy.metadata()`` the runtime and the nodes read.
METADATA_KEYS = ('action_dim', 'chunk_size', 'dimension_names', 'image_size', 'control_hz',
                 'cameras', 'num_images', 'proprio_dim', 'config')


@runtime_checkable
class QuantPolicy(Protocol):
    """The two methods every quantization algorithm relies on."""

    def action_tensor(self, batch: Batch) -> torch.Tensor:
        """Return normalized actions (B, H, A), differentiable in the weights."""

    def quantizable_layers(self) -> Dict[str, nn.Linear]:
        """Return the linears that may be quantized, by module path."""


@runtime_checkable
class Policy(QuantPolicy, Protocol):
    """A closed-loop policy: observations in, de-normalized action chunks out."""

    def make_batch(self, obs: Observation) -> Batch:
        """Return the one-sample batch (tensors with a leading 1) ``action_tensor`` takes."""

    def predict(self, obs: Observation) -> ActionChunk:
        """Return the chunk (H, A) for ``obs``, de-normalized, with the dimension names."""

    def metadata(self) -> dict:
        """Return sizes, cameras, control rate and config under ``METADATA_KEYS``."""


@runtime_checkable
class ResidualRotatable(Protocol):
    """A policy whose transformer's residual stream can be rotated offline (QuaRot)."""

    def rotate_residual_(self, seed: int = 0, fold: bool = True) -> FrozenSet[str]:
        """Rotate the stream in place, same outputs; return the linears that now read it."""
