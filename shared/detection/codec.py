"""JSON for the detection state's frozen dataclasses, driven by their type hints.

Fields missing from stored JSON take their defaults, so a profile written by an older version
still loads after a field is added; fields it no longer knows are ignored.

Each type's loader and dumper is built once from its hints and cached: profiles are read and
written for every user in every detection batch, so walking the hints per value would cost more
than the storage round trips.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")
Loader = Callable[[Any], Any]
Dumper = Callable[[Any], Any]


def _same(raw: Any) -> Any:
    return raw


def _to_float(raw: Any) -> Any:
    return float(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw


_LOADERS: dict[Any, Loader] = {}
_DUMPERS: dict[type, Dumper] = {}


def _loader(tp: Any) -> Loader:
    found = _LOADERS.get(tp)
    if found is None:
        found = _LOADERS[tp] = _build_loader(tp)
    return found


def _build_loader(tp: Any) -> Loader:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        load_inner = _loader(inner)
        return lambda raw: None if raw is None else load_inner(raw)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_loader(tp)
    if tp is datetime:
        return datetime.fromisoformat
    if origin is tuple:
        item = _loader(args[0])
        if item is _same:
            return tuple
        return lambda raw: tuple([item(v) for v in raw])
    if origin is frozenset:
        member = _loader(args[0])
        return lambda raw: frozenset([member(v) for v in raw])
    if origin is dict:
        value = _loader(args[1])
        if value is _same:
            return dict
        return lambda raw: {k: value(v) for k, v in raw.items()}
    if tp is float:
        return _to_float
    return _same


def _dataclass_loader(cls: type) -> Loader:
    hints = typing.get_type_hints(cls)
    fields: dict[str, Loader] = {}

    def load(raw: dict[str, Any]) -> Any:
        if not fields:  # built on first use: a dataclass may refer to itself
            fields.update({f.name: _loader(hints[f.name]) for f in dataclasses.fields(cls)})
        return cls(**{k: fields[k](v) for k, v in raw.items() if k in fields})

    return load


def _iso(value: datetime) -> str:
    return value.isoformat()


def _dataclass_dumper(cls: type) -> Dumper:
    found = _DUMPERS.get(cls)
    if found is None:
        names = tuple(f.name for f in dataclasses.fields(cls))

        def dump_dataclass(value: Any) -> dict[str, Any]:
            return {name: dump(getattr(value, name)) for name in names}

        found = _DUMPERS[cls] = dump_dataclass
    return found


def dump(value: Any) -> Any:
    """JSON-ready data for a dataclass (and what it holds)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is datetime:
        return _iso(value)
    if kind is dict:
        return {str(k): dump(v) for k, v in value.items()}
    if kind is tuple or kind is list:
        return [dump(v) for v in value]
    if kind is frozenset:
        return sorted(dump(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_dumper(kind)(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def load(tp: Any, raw: Any) -> Any:
    return _loader(tp)(raw)


def load_as(cls: type[T], raw: Any) -> T:
    value: T = _loader(cls)(raw)
    return value
