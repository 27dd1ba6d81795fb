# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Headless OpenGL for the simulators, made safe for a process that also runs the policy.

Mesa's software renderer (llvmpipe) and Triton each carry LLVM. When Triton's library is
loaded after Mesa's (a policy first built after a scene was rendered, as a test run or a
notebook does), the process crashed with a segmentation fault in Triton's import. Loading
Triton first, when it is installed, avoids it; the policy imports it anyway (transformers'
Llama does).
"""

import importlib.util
import os


def prepare_gl() -> None:
    """Select EGL (unless MUJOCO_GL is set) and load Triton before any GL context exists."""
    os.environ.setdefault('MUJOCO_GL', 'egl')
    if importlib.util.find_spec('triton') is not None:
        import triton  # noqa: F401 - only its load order matters
