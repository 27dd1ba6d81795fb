# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Baselines, one small module each, all producing LayerQuant results (qvla_ros.core)."""
