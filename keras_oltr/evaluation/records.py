"""Typed JSON records: the base of the result dataclasses and their JSON form.

A record is a frozen, keyword-only dataclass whose field types are its schema. It
holds plain Python values only: on construction every field is normalised to its
type (numpy scalars to int / float, arrays to tuples, NaN and inf to None), so a
record built from computed numbers equals the one read back from its JSON.
``to_dict()`` gives the JSON-compatible dict (keys = field names, tuples as lists,
undefined numbers as null); ``from_dict(data)`` reads such a dict back and raises
ValueError naming the key path of every missing key or wrongly typed value
("metrics.open.f_measure: expected a number, got 'x'"). Unknown keys are ignored.
A field with a default may be absent: older files lack it, and ``to_dict`` leaves
it out while it is None.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["Record", "record", "to_json_compatible"]

# Errors listed in one ValueError at most; a broken list would otherwise repeat itself.
_MAX_ERRORS = 50


def to_json_compatible(value: Any) -> Any:
    """Converts numpy scalars/arrays to Python types and NaN/inf to None, recursively."""
    if isinstance(value, Mapping):
        return {str(k): to_json_compatible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iub":
            return value.tolist()
        return [to_json_compatible(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(kind: Any) -> Any:
    """The X of ``X | None``, or None for any other type."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        (inner,) = (a for a in typing.get_args(kind) if a is not type(None))
        return inner
    return None


def _normalise(kind: Any, value: Any, name: str) -> Any:
    """``value`` as a plain Python value of the field type ``kind`` (see module docstring)."""
    inner = _optional(kind)
    if inner is not None:
        return None if value is None else _normalise(inner, value, name)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        values = value.tolist() if isinstance(value, np.ndarray) else value
        return tuple(_normalise(args[0], v, name) for v in values)
    if origin is dict:
        return {str(k): _normalise(args[1], v, name) for k, v in value.items()}
    if isinstance(kind, type) and issubclass(kind, Record):
        if not isinstance(value, kind):
            raise TypeError(f"`{name}` must be a {kind.__name__}. Received: {type(value).__name__}")
        return value
    if kind is float:
        value = float(value)
        return value if math.isfinite(value) else None
    if kind is int:
        return int(value)
    if kind is str:
        return str(value)
    if kind is bool:
        return bool(value)
    if kind is Any:
        return to_json_compatible(value)
    raise TypeError(f"Unsupported result field type {kind!r} of `{name}`")


class _Reader:
    """Reads a JSON value as a field type, collecting one error per bad key path."""

    def __init__(self):
        self.errors: list[str] = []

    def fail(self, path: str, expected: str, value: Any) -> None:
        self.errors.append(f"{path or 'document'}: expected {expected}, got {value!r:.60}")

    def read(self, kind: Any, value: Any, path: str) -> Any:
        inner = _optional(kind)
        if inner is not None:  # X | None: null allowed
            return None if value is None else self.read(inner, value, path)
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin is tuple:
            if not isinstance(value, list):
                return self.fail(path, "a list", value)
            items = []
            for index, item in enumerate(value):
                if len(self.errors) > _MAX_ERRORS:
                    break
                items.append(self.read(args[0], item, f"{path}[{index}]"))
            return tuple(items)
        if origin is dict:
            if not isinstance(value, Mapping):
                return self.fail(path, "an object", value)
            return {str(k): self.read(args[1], v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(kind, type) and issubclass(kind, Record):
            return self.record(kind, value, path)
        return self.leaf(kind, value, path)

    def leaf(self, kind: Any, value: Any, path: str) -> Any:
        if kind is Any:
            return value
        if kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value):
                    return float(value)
            return self.fail(path, "a number", value)
        if kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return self.fail(path, "an integer", value)
        if kind in (str, bool):
            if isinstance(value, kind):
                return value
            return self.fail(path, "a string" if kind is str else "a boolean", value)
        raise TypeError(f"Unsupported result field type {kind!r} at {path}")

    def record(self, cls: type[Record], value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            return self.fail(path, "an object", value)
        hints = _field_types(cls)
        values = {}
        for field in dataclasses.fields(cls):
            child = f"{path}.{field.name}" if path else field.name
            if field.name in value:
                values[field.name] = self.read(hints[field.name], value[field.name], child)
            elif field.default is dataclasses.MISSING:
                self.errors.append(f"{child}: missing")
        return cls(**values) if not self.errors else None


def _to_json(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return to_json_compatible(value)


class Record:
    """Base of the result dataclasses: normalised fields, ``pick``, ``to_dict``, ``from_dict``."""

    def __post_init__(self):
        hints = _field_types(type(self))
        for field in dataclasses.fields(self):
            value = _normalise(hints[field.name], getattr(self, field.name), field.name)
            object.__setattr__(self, field.name, value)

    @classmethod
    def pick(cls, values: Mapping[str, Any]):
        """The record of the entries of ``values`` named as its fields (others ignored)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def to_dict(self) -> dict[str, Any]:
        """The JSON-compatible dict (keys = field names; absent-able fields left out if None)."""
        return {
            field.name: _to_json(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if field.default is dataclasses.MISSING or getattr(self, field.name) is not None
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | None = None):
        """Reads ``to_dict``'s form back.

        Args:
            data: the parsed JSON object.
            path: key path named in errors (default: the class name).

        Raises:
            ValueError: one line per missing key or wrongly typed value.
        """
        reader = _Reader()
        result = reader.record(cls, data, cls.__name__ if path is None else path)
        if reader.errors:
            more = len(reader.errors) - _MAX_ERRORS
            lines = reader.errors[:_MAX_ERRORS] + ([f"... and {more} more"] if more > 0 else [])
            raise ValueError("\n".join(lines))
        return result


# The decorator of every record class: frozen (results are values), keyword-only.
record = dataclasses.dataclass(frozen=True, kw_only=True)
