# Copyright 2026 qvla_ros authors. Apache-2.0.
"""VLA model adapters: architectures, checkpoints and action normalization."""
