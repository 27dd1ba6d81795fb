# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Build (once, lazily) and load the fused CPU kernels in ``cpu_ext.cpp``.

torch.utils.cpp_extension compiles the file with the machine's C++ compiler on first use
(about a minute) and caches it under TORCH_EXTENSIONS_DIR. If anything fails, callers fall back
to the pure-torch CPU path; :func:`status` says why.
"""

import functools
from pathlib import Path
from typing import Dict, Optional

_STATUS: Dict[str, Optional[str]] = {'error': None}


@functools.lru_cache(maxsize=1)
def load() -> Optional[object]:
    """Return the compiled module, or None (with the reason in :func:`status`)."""
    try:
        from torch.utils import cpp_extension
        src = Path(__file__).with_name('cpu_ext.cpp')
        return cpp_extension.load(
            name='qvla_cpu_ext', sources=[str(src)],
            extra_cflags=['-O3', '-march=native', '-fopenmp'], extra_ldflags=['-fopenmp'],
            verbose=False)
    except (ImportError, OSError, RuntimeError) as err:
        _STATUS['error'] = f'{type(err).__name__}: {err}'
        return None


def status() -> str:
    """Return 'ok', 'not built yet', or why the extension is unavailable."""
    if load.cache_info().currsize == 0:
        return 'not built yet'
    return 'ok' if load() is not None else f'unavailable: {_STATUS["error"]}'
