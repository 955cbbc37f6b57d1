"""JSON for the detection state's frozen dataclasses, driven by their type hints.

Fields missing from stored JSON take their defaults, so a profile written by an older version
still loads after a field is added.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")


def dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(dump(v) for v in value)
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): dump(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def load(tp: Any, raw: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return load(inner, raw)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        return tp(**{k: load(hints[k], v) for k, v in raw.items() if k in known})
    if tp is datetime:
        return datetime.fromisoformat(raw)
    if origin is tuple:
        item = args[0]
        return tuple(load(item, v) for v in raw)
    if origin is frozenset:
        return frozenset(load(args[0], v) for v in raw)
    if origin is dict:
        return {k: load(args[1], v) for k, v in raw.items()}
    if tp is float and isinstance(raw, int):
        return float(raw)
    return raw


def load_as(cls: type[T], raw: Any) -> T:
    value: T = load(cls, raw)
    return value
