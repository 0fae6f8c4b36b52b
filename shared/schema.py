"""Declarative wire types for message fields.

Each message field names a :class:`WireType` in its dataclass metadata. The type owns three
things: ``check`` validates (and normalises) a Python value when a message is built, ``pack``
turns it into a msgpack-ready object, and ``unpack`` turns a msgpack object back into the
Python form. ``unpack`` only checks the *shape* it needs to convert; value rules run once, in
``check``, when the message is constructed. So a decoded message and a hand-built one pass
through one validation path.

Errors are raised as :class:`shared.errors.InvalidMessage` with a dotted field path; the decoder
turns them into :class:`shared.errors.DecodeError`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any, Final, Generic, TypeVar

from shared.errors import InvalidMessage
from shared.geometry import BOX_WIRE_BYTES, Box

T = TypeVar("T")
E = TypeVar("E", bound=IntEnum)

_F32: Final = struct.Struct("<f")


def _type_name(value: object) -> str:
    return type(value).__name__


def _expect(path: str, value: object, kinds: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise InvalidMessage(path, f"expected {what}, got bool")
    if not isinstance(value, kinds):
        raise InvalidMessage(path, f"expected {what}, got {_type_name(value)}")


class WireType(Generic[T]):
    """Base of all wire types; subclasses override the three conversions."""

    def check(self, value: Any, path: str) -> T:
        raise NotImplementedError

    def pack(self, value: T) -> Any:
        return value

    def unpack(self, obj: Any, path: str) -> Any:
        return obj


class UInt(WireType[int]):
    """An unsigned integer of at most ``bits`` bits."""

    def __init__(self, bits: int, *, low: int = 0, high: int | None = None) -> None:
        self.bits = bits
        self.low = low
        self.high = 2**bits - 1 if high is None else min(high, 2**bits - 1)

    def check(self, value: Any, path: str) -> int:
        _expect(path, value, int, "an integer")
        if not self.low <= value <= self.high:
            raise InvalidMessage(path, f"{value} is outside [{self.low}, {self.high}]")
        return int(value)


class SInt(WireType[int]):
    """A signed integer in [low, high]."""

    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.high = high

    def check(self, value: Any, path: str) -> int:
        _expect(path, value, int, "an integer")
        if not self.low <= value <= self.high:
            raise InvalidMessage(path, f"{value} is outside [{self.low}, {self.high}]")
        return int(value)


class Bool(WireType[bool]):
    def check(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise InvalidMessage(path, f"expected a bool, got {_type_name(value)}")
        return value


def _as_f32(path: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidMessage(path, f"expected a number, got {_type_name(value)}")
    v = float(value)
    if math.isnan(v):
        raise InvalidMessage(path, "NaN is not allowed")
    if math.isinf(v):
        raise InvalidMessage(path, f"{v} is not allowed (must be finite)")
    if not low <= v <= high:
        raise InvalidMessage(path, f"{v} is outside [{low}, {high}]")
    try:
        f32: float = _F32.unpack(_F32.pack(v))[0]
    except OverflowError:
        raise InvalidMessage(path, f"{v} does not fit a float32") from None
    return f32


class F32(WireType[float]):
    """A finite float, carried as IEEE float32 (the value is rounded to float32 when built)."""

    def __init__(self, low: float = -3.0e38, high: float = 3.0e38) -> None:
        self.low = low
        self.high = high

    def check(self, value: Any, path: str) -> float:
        return _as_f32(path, value, self.low, self.high)

    def unpack(self, obj: Any, path: str) -> Any:
        if not isinstance(obj, float):
            raise InvalidMessage(path, f"expected a float, got {_type_name(obj)}")
        return obj


class Str(WireType[str]):
    """A text string of at most ``max_chars`` characters, optionally matching ``pattern``."""

    def __init__(self, max_chars: int, *, pattern: str | None = None, min_chars: int = 0) -> None:
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.pattern = re.compile(pattern) if pattern else None

    def check(self, value: Any, path: str) -> str:
        _expect(path, value, str, "a string")
        if not self.min_chars <= len(value) <= self.max_chars:
            raise InvalidMessage(
                path, f"length {len(value)} is outside [{self.min_chars}, {self.max_chars}]"
            )
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise InvalidMessage(path, f"{value!r} does not match {self.pattern.pattern}")
        return str(value)


class Bytes(WireType[bytes]):
    """Raw bytes of at most ``max_bytes`` (or exactly ``exact`` bytes)."""

    def __init__(self, max_bytes: int, *, exact: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.exact = exact

    def check(self, value: Any, path: str) -> bytes:
        _expect(path, value, (bytes, bytearray, memoryview), "bytes")
        data = bytes(value)
        if self.exact is not None and len(data) != self.exact:
            raise InvalidMessage(path, f"expected exactly {self.exact} bytes, got {len(data)}")
        if len(data) > self.max_bytes:
            raise InvalidMessage(path, f"{len(data)} bytes exceeds max of {self.max_bytes}")
        return data


class Enum(WireType[E]):
    """An :class:`IntEnum` member, carried as its integer value."""

    def __init__(self, enum: type[E]) -> None:
        self.enum = enum

    def check(self, value: Any, path: str) -> E:
        if isinstance(value, self.enum):
            return value
        _expect(path, value, int, f"a {self.enum.__name__}")
        try:
            return self.enum(value)
        except ValueError:
            raise InvalidMessage(path, f"{value} is not a valid {self.enum.__name__}") from None

    def pack(self, value: E) -> int:
        return int(value)


class BoxType(WireType[Box]):
    """One :class:`Box`, carried as 8 bytes."""

    def check(self, value: Any, path: str) -> Box:
        _expect(path, value, Box, "a Box")
        return value  # type: ignore[no-any-return]

    def pack(self, value: Box) -> bytes:
        return value.to_bytes()

    def unpack(self, obj: Any, path: str) -> Box:
        if not isinstance(obj, bytes) or len(obj) != BOX_WIRE_BYTES:
            raise InvalidMessage(path, f"expected {BOX_WIRE_BYTES} bytes for a box")
        return Box.from_bytes(obj)


class Boxes(WireType[tuple[Box, ...]]):
    """A sequence of at most ``max_items`` boxes, carried as one bin of 8 bytes each."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items

    def check(self, value: Any, path: str) -> tuple[Box, ...]:
        _expect(path, value, (tuple, list), "a sequence of Box")
        if len(value) > self.max_items:
            raise InvalidMessage(path, f"{len(value)} boxes exceeds max of {self.max_items}")
        for i, box in enumerate(value):
            _expect(f"{path}[{i}]", box, Box, "a Box")
        return tuple(value)

    def pack(self, value: tuple[Box, ...]) -> bytes:
        return b"".join(box.to_bytes() for box in value)

    def unpack(self, obj: Any, path: str) -> tuple[Box, ...]:
        if not isinstance(obj, bytes):
            raise InvalidMessage(path, f"expected bytes, got {_type_name(obj)}")
        if len(obj) % BOX_WIRE_BYTES or len(obj) > self.max_items * BOX_WIRE_BYTES:
            raise InvalidMessage(path, f"{len(obj)} bytes is not a whole number of boxes")
        return tuple(
            Box.from_bytes(obj[i : i + BOX_WIRE_BYTES]) for i in range(0, len(obj), BOX_WIRE_BYTES)
        )


class Numbers(WireType[tuple[Any, ...]]):
    """A sequence of numbers packed into one bin with a fixed-width little-endian format.

    ``fmt`` is a :mod:`struct` code: ``B``/``H``/``I`` for unsigned ints, ``f`` for float32.
    """

    def __init__(self, fmt: str, max_items: int, *, low: float = 0, high: float | None = None):
        self.fmt = fmt
        self.width = struct.calcsize("<" + fmt)
        self.max_items = max_items
        self.is_float = fmt == "f"
        self.item: WireType[Any] = (
            F32(low, 3.0e38 if high is None else high)
            if self.is_float
            else UInt(8 * self.width, low=int(low), high=None if high is None else int(high))
        )

    def check(self, value: Any, path: str) -> tuple[Any, ...]:
        _expect(path, value, (tuple, list), "a sequence of numbers")
        if len(value) > self.max_items:
            raise InvalidMessage(path, f"{len(value)} items exceeds max of {self.max_items}")
        return tuple(self.item.check(v, f"{path}[{i}]") for i, v in enumerate(value))

    def pack(self, value: tuple[Any, ...]) -> bytes:
        return struct.pack(f"<{len(value)}{self.fmt}", *value)

    def unpack(self, obj: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(obj, bytes):
            raise InvalidMessage(path, f"expected bytes, got {_type_name(obj)}")
        count, rest = divmod(len(obj), self.width)
        if rest or count > self.max_items:
            raise InvalidMessage(path, f"{len(obj)} bytes is not 0..{self.max_items} items")
        return struct.unpack(f"<{count}{self.fmt}", obj)


class Histogram(WireType[dict[int, int]]):
    """A map from small integer keys (class ids) to counts."""

    def __init__(self, max_entries: int, *, max_key: int, max_value: int) -> None:
        self.max_entries = max_entries
        self.key = UInt(16, high=max_key)
        self.value = UInt(32, high=max_value)

    def check(self, value: Any, path: str) -> dict[int, int]:
        _expect(path, value, Mapping, "a mapping")
        if len(value) > self.max_entries:
            raise InvalidMessage(path, f"{len(value)} entries exceeds max of {self.max_entries}")
        return {
            self.key.check(k, f"{path}.key"): self.value.check(v, f"{path}[{k!r}]")
            for k, v in value.items()
        }

    def pack(self, value: dict[int, int]) -> dict[int, int]:
        return dict(sorted(value.items()))  # sorted: one byte string per message

    def unpack(self, obj: Any, path: str) -> Any:
        if not isinstance(obj, dict):
            raise InvalidMessage(path, f"expected a map, got {_type_name(obj)}")
        return obj


class NamedFloats(WireType[dict[str, float]]):
    """A map from short names to finite float32 numbers (a health summary), at most
    ``max_entries``; each name follows ``name``'s rules, each number ``value``'s. Packed with
    its names sorted, so a summary encodes to one byte string."""

    def __init__(self, max_entries: int, name: Str, value: F32) -> None:
        self.max_entries = max_entries
        self.name = name
        self.value = value

    def check(self, value: Any, path: str) -> dict[str, float]:
        _expect(path, value, Mapping, "a mapping")
        if len(value) > self.max_entries:
            raise InvalidMessage(path, f"{len(value)} entries exceeds max of {self.max_entries}")
        return {
            self.name.check(k, f"{path}.key"): self.value.check(v, f"{path}[{k!r}]")
            for k, v in value.items()
        }

    def pack(self, value: dict[str, float]) -> dict[str, float]:
        return dict(sorted(value.items()))

    def unpack(self, obj: Any, path: str) -> Any:
        if not isinstance(obj, dict):
            raise InvalidMessage(path, f"expected a map, got {_type_name(obj)}")
        for k, v in obj.items():
            if not isinstance(v, float):
                raise InvalidMessage(f"{path}[{k!r}]", f"expected a float, got {_type_name(v)}")
        return obj


class Record:
    """Base of frozen dataclass records whose fields carry wire types.

    ``__post_init__`` runs every field's ``check`` (storing the normalised value) and then
    ``_validate`` for rules that span fields.
    """

    __slots__ = ()

    def __post_init__(self) -> None:
        for name, check, path in _checks(type(self)):
            value = getattr(self, name)
            checked = check(value, path)
            if checked is not value:
                object.__setattr__(self, name, checked)
        self._validate()

    def _validate(self) -> None:
        """Cross-field rules; raise :class:`InvalidMessage`."""


R = TypeVar("R", bound=Record)


class Nested(WireType[R]):
    """A record inside a record, carried as a msgpack array of its fields."""

    def __init__(self, record: type[R]) -> None:
        self.record = record

    def check(self, value: Any, path: str) -> R:
        _expect(path, value, self.record, f"a {self.record.__name__}")
        return value  # type: ignore[no-any-return]

    def pack(self, value: R) -> list[Any]:
        return pack_record(value)

    def unpack(self, obj: Any, path: str) -> R:
        if not isinstance(obj, list):
            raise InvalidMessage(path, f"expected an array, got {_type_name(obj)}")
        return unpack_record(self.record, obj, path)


class Seq(WireType[tuple[T, ...]]):
    """A sequence of at most ``max_items`` values of one wire type, as a msgpack array."""

    def __init__(self, item: WireType[T], max_items: int) -> None:
        self.item = item
        self.max_items = max_items

    def check(self, value: Any, path: str) -> tuple[T, ...]:
        _expect(path, value, (tuple, list), "a sequence")
        if len(value) > self.max_items:
            raise InvalidMessage(path, f"{len(value)} items exceeds max of {self.max_items}")
        return tuple(self.item.check(v, f"{path}[{i}]") for i, v in enumerate(value))

    def pack(self, value: tuple[T, ...]) -> list[Any]:
        return [self.item.pack(v) for v in value]

    def unpack(self, obj: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(obj, list):
            raise InvalidMessage(path, f"expected an array, got {_type_name(obj)}")
        if len(obj) > self.max_items:
            raise InvalidMessage(path, f"{len(obj)} items exceeds max of {self.max_items}")
        return tuple(self.item.unpack(v, f"{path}[{i}]") for i, v in enumerate(obj))


def wire(kind: WireType[Any], **kwargs: Any) -> Any:
    """A dataclass field carrying ``kind`` as its wire type."""
    return dataclasses.field(metadata={"wire": kind}, **kwargs)


_FIELDS_CACHE: dict[type, tuple[dataclasses.Field[Any], ...]] = {}


def _wire_fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    cached = _FIELDS_CACHE.get(cls)
    if cached is None:
        cached = tuple(f for f in dataclasses.fields(cls) if "wire" in f.metadata)
        _FIELDS_CACHE[cls] = cached
    return cached


def wire_fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    """The wire-typed fields of a record class, in wire order."""
    return _wire_fields(cls)


def pack_record(record: Record) -> list[Any]:
    """A record's fields as a msgpack-ready list, in declaration order."""
    return [f.metadata["wire"].pack(getattr(record, f.name)) for f in _wire_fields(type(record))]


def unpack_record(cls: type[R], items: list[Any], path: str) -> R:
    """Rebuild ``cls`` from its msgpack list; raises :class:`InvalidMessage` with a field path."""
    fields = _unpackers(cls, path)
    if len(items) != len(fields):
        raise InvalidMessage(path, f"expected {len(fields)} fields, got {len(items)}")
    kwargs = {n: unpack(obj, where) for (n, unpack, where), obj in zip(fields, items, strict=True)}
    return cls(**kwargs)


# Per record class (and path), each field's name, bound check or unpack and error path, made
# once: decoding is the cloud's hottest loop, and rebuilding these strings per field and per
# message was a third of it.
_Step = tuple[str, Callable[[Any, str], Any], str]
_CHECKS_CACHE: dict[type, tuple[_Step, ...]] = {}
_UNPACKERS_CACHE: dict[tuple[type, str], tuple[_Step, ...]] = {}
_UNPACKERS_MAX: Final = 4_096  # distinct (class, path) pairs kept (nested paths vary)


def _checks(cls: type) -> tuple[_Step, ...]:
    cached = _CHECKS_CACHE.get(cls)
    if cached is None:
        name = cls.__name__
        cached = tuple(
            (f.name, f.metadata["wire"].check, f"{name}.{f.name}") for f in _wire_fields(cls)
        )
        _CHECKS_CACHE[cls] = cached
    return cached


def _unpackers(cls: type, path: str) -> tuple[_Step, ...]:
    cached = _UNPACKERS_CACHE.get((cls, path))
    if cached is None:
        cached = tuple(
            (f.name, f.metadata["wire"].unpack, f"{path}.{f.name}") for f in _wire_fields(cls)
        )
        if len(_UNPACKERS_CACHE) < _UNPACKERS_MAX:
            _UNPACKERS_CACHE[(cls, path)] = cached
    return cached
