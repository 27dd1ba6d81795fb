# Copyright 2026 qvla_ros authors. Apache-2.0.
"""One error for a file that is missing, damaged or contradicts itself, and checked readers.

Every message names the file and what was expected, so the CLI and the nodes can show it as
one line.
"""

import json
from pathlib import Path
from typing import Any, Dict, Tuple


class ArtifactError(ValueError):
    """An artifact on disk cannot be used; the text names the file and the problem."""


class LockedError(ArtifactError):
    """Another process holds the lock of an artifact that is being written."""


def read_json(path: Path, what: str) -> Any:
    """Return the parsed JSON at ``path``; ArtifactError if missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f'{path} does not exist; expected {what}')
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f'{path} is not valid JSON ({err}); expected {what}') from None
    except OSError as err:
        raise ArtifactError(f'{path} cannot be read ({err.strerror}); expected {what}') from None


def read_json_object(path: Path, what: str) -> Dict[str, Any]:
    """Return the JSON object at ``path``; ArtifactError unless it is an object."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise ArtifactError(f'{path} holds a JSON {type(data).__name__}; expected {what} '
                            '(a JSON object)')
    return data


def read_safetensors(path: Path, framework: str = 'pt', with_metadata: bool = False,
                     what: str = 'a safetensors file'):
    """Return the tensors of a safetensors file (and its metadata dict if asked).

    A truncated file, a bad header or a missing file is an ArtifactError naming the file.
    """
    from safetensors import safe_open, SafetensorError
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f'{path} does not exist; expected {what}')
    try:
        with safe_open(str(path), framework=framework) as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except (SafetensorError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ArtifactError(f'{path} is not a readable safetensors file ({first}); it may be '
                            'truncated or damaged') from None
    return (tensors, meta) if with_metadata else tensors


def split_metadata(meta: Dict[str, str], key: str, path: Path) -> Tuple[dict, bool]:
    """Return (parsed JSON metadata under ``key``, present) of a safetensors header."""
    raw = meta.get(key)
    if raw is None:
        return {}, False
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ArtifactError(f'{path}: metadata {key!r} is not valid JSON ({err})') from None
    if not isinstance(value, dict):
        raise ArtifactError(f'{path}: metadata {key!r} must be a JSON object')
    return value, True
