# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Mixed-bit packed format ops: torch reference, CPU path and Triton GPU kernels.

Nothing touches a device at import.
"""
