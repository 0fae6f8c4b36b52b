"""Parameter types of the query API: ids with their ranges, and times.

Bounds matter here: an id past int64 would reach the database driver and fail there (a 500),
so every id is bounded where it is parsed (422). Times are accepted as ISO 8601 (an offset, or
UTC when none is given) or as Unix seconds (a number, or a string holding one), and become
integer microseconds since the epoch, computed exactly (no float rounding) with
:class:`decimal.Decimal`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Any, Final

from pydantic import Field, PlainValidator, WithJsonSchema

from shared.limits import MAX_CLASS_ID

INT64_MAX: Final = 2**63 - 1
MAX_FILTER_ITEMS: Final = 100
"""Camera or class ids in one filter."""
EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_S: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_S: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?")
_US: Final = timedelta(microseconds=1)

DetectionId = Annotated[int, Field(ge=1, le=INT64_MAX, description="A detection's id.")]
TrackId = Annotated[int, Field(ge=1, le=INT64_MAX, description="A track's id.")]
CameraId = Annotated[int, Field(ge=1, le=INT64_MAX, description="A camera's id.")]
ClassId = Annotated[int, Field(ge=0, le=MAX_CLASS_ID, description="A detector class id.")]


def _from_seconds(seconds: Decimal) -> int:
    if not seconds.is_finite() or not _MIN_S <= seconds <= _MAX_S:
        raise ValueError("Unix time out of range (years 1 to 9999)")
    return int((seconds * 1_000_000).to_integral_value(ROUND_FLOOR))


def parse_time_us(value: Any) -> int:
    """ISO 8601 text or Unix seconds -> microseconds since the epoch; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 time or Unix seconds, not a boolean")
    if isinstance(value, int):
        return _from_seconds(Decimal(value))
    if isinstance(value, float):
        return _from_seconds(Decimal(repr(value)) if value == value else Decimal("NaN"))
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 time or Unix seconds")
    text = value.strip()
    if len(text) > 64:
        raise ValueError("time text longer than 64 characters")
    if _NUMBER.fullmatch(text):
        return _from_seconds(Decimal(text))
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is neither ISO 8601 (2026-11-24T10:00:00Z) nor Unix seconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - EPOCH) // _US


def to_datetime(us: int) -> datetime:
    """Microseconds since the epoch -> an aware UTC datetime (serialised with ``Z``)."""
    low, high = _MIN_S * 1_000_000, _MAX_S * 1_000_000
    return EPOCH + timedelta(microseconds=min(max(us, low), high))


Time = Annotated[
    int,
    PlainValidator(parse_time_us),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "number", "minimum": _MIN_S, "maximum": _MAX_S},
            ],
            "description": "ISO 8601 (UTC when no offset is given) or Unix seconds.",
            "examples": ["2026-11-24T10:00:00Z", 1795514400.5],
        }
    ),
]
"""A time parameter, validated into microseconds since the Unix epoch."""
