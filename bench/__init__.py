# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Benchmarks: scripts and their JSON results (nothing imports this from the library)."""
