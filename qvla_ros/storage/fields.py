# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Build a frozen config dataclass from JSON, checking every field's type first.

A config.json edited by hand (``"hidden": "64"``) otherwise reaches torch as a string and fails
far from the file; here it is an ArtifactError naming the file, the field and the type.
"""

import dataclasses
import typing
from typing import Any, Dict, Type, TypeVar

from qvla_ros.storage.errors import ArtifactError

T = TypeVar('T')


def _ok(value: Any, hint: Any) -> bool:
    """Return whether a JSON value fits the annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin is typing.Union:
        return any(_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args else Any
        return all(_ok(v, item) or (dataclasses.is_dataclass(item) and isinstance(v, dict))
                   for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # nested dataclasses and other types are checked by their own builders


def check_fields(cls: type, data: Any, where: str) -> Dict[str, Any]:
    """Return ``data`` if it is a dict of ``cls``'s fields with fitting types, else raise.

    Unknown fields and missing required fields are errors too.
    """
    if not isinstance(data, dict):
        raise ArtifactError(f'{where}: expected a JSON object of {cls.__name__} fields, got '
                            f'{type(data).__name__}')
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ArtifactError(f'{where}: unknown {cls.__name__} fields {unknown}; expected some '
                            f'of {sorted(fields)}')
    for name, f in fields.items():
        required = (f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING)
        if name not in data:
            if required:
                raise ArtifactError(f'{where}: {cls.__name__} field {name!r} is missing')
            continue
        if not _ok(data[name], hints[name]):
            raise ArtifactError(f'{where}: {cls.__name__} field {name!r} must be '
                                f'{_name(hints[name])}, got {data[name]!r}')
    return data


def _name(hint: Any) -> str:
    return getattr(hint, '__name__', None) or str(hint).replace('typing.', '')


def build(cls: Type[T], data: Any, where: str, **converted: Any) -> T:
    """Return ``cls(**data)`` after ``check_fields``; ``converted`` replaces fields (nested).

    The constructor's own checks (``__post_init__``) become ArtifactErrors naming ``where``.
    """
    check_fields(cls, data, where)
    values = {**data, **converted}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ArtifactError(f'{where}: invalid {cls.__name__} ({err})') from None
