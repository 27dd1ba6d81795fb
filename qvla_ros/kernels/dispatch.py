# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Pure backend choice for a packed matmul, and the lazy imports behind it."""

from enum import Enum
import functools


class Backend(str, Enum):
    """Which implementation runs a packed layer."""

    AUTO = 'auto'
    TRITON = 'triton'        # fused GPU kernel (or the Triton interpreter)
    CPU = 'cpu'              # on-the-fly unpack + one GEMM per bit group
    REFERENCE = 'reference'  # dequantize everything in float32: slow, always correct


@functools.lru_cache(maxsize=1)
def triton_importable() -> bool:
    """Return True when triton imports (checked once, on first use)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=None)  # called on every forward: a dict lookup once warm
def choose_backend(device_type: str, preference: Backend = Backend.AUTO) -> Backend:
    """Return the backend for tensors on ``device_type`` ('cuda', 'cpu', ...)."""
    preference = Backend(preference)
    if preference is Backend.TRITON and not triton_importable():
        raise ImportError('Backend.TRITON needs the triton package: pip install triton')
    if preference is not Backend.AUTO:
        return preference
    if device_type == 'cuda' and triton_importable():
        return Backend.TRITON
    if device_type == 'cpu':
        return Backend.CPU
    return Backend.REFERENCE
