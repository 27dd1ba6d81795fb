# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Closed-loop benchmark environments, scripted experts and the evaluation harness."""
