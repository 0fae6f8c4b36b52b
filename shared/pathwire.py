"""The compact wire form of a :class:`~shared.messages.TrackSummary`'s simplified path.

A path is a grid step and a list of points; each point is a time offset from the track's
``first_seen_us`` (milliseconds) and a box quantised to the grid (``grid`` units of 1/65535 of
the frame: 16 is 0.16 px of a 640 px frame). On the wire it is one msgpack bin::

    varint grid | varint n | n x (varint dt_ms | zvarint dx1 | zvarint dy1 | zvarint dw |
                                  zvarint dh)

``dt_ms`` is the offset's increase over the previous point's (the first point's: over 0), and
the box is coded in grid cells as its top-left corner, width and height, each as the
difference from the previous point's (the first point's: from 0). Cell ``k`` is coordinate
``min(k * grid, 65535) / 65535``: the frame's far edge is the last cell, partial when ``grid``
does not divide 65535. ``varint`` is LEB128 (unsigned, 7 bits a byte, at most 5 bytes
here); ``zvarint`` a zigzag-mapped signed LEB128. A typical point of a car in a 640 px frame
takes 5 to 8 bytes instead of 8 + 8 for a box and a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from shared import limits
from shared.errors import InvalidMessage, VarintError
from shared.geometry import BOX_UNITS, Box
from shared.schema import WireType
from shared.varint import read_uvarint, unzigzag, write_svarint, write_uvarint

_MAX_VARINT_BYTES: Final = 5  # 35 bits: every field here is below 2**32


@dataclass(frozen=True, slots=True)
class PathPoint:
    """A path point: ``offset_ms`` after the track's first sighting, and its box."""

    offset_ms: int
    box: Box


@dataclass(frozen=True, slots=True)
class TrackPath:
    """A simplified path: boxes quantised to ``grid`` units of 1/65535 (see module doc)."""

    grid: int
    points: tuple[PathPoint, ...]


def _cells(value: float, grid: int) -> int:
    """Grid cell of a coordinate; the frame's far edge (1.0) is the last, maybe partial, cell."""
    units = round(value * BOX_UNITS)
    return -(-units // grid) if units == BOX_UNITS else round(units / grid)


def _coord(cells: int, grid: int) -> float:
    return min(cells * grid, BOX_UNITS) / BOX_UNITS


def quantise(box: Box, grid: int) -> Box:
    """``box`` with its corner and size snapped to the grid (what the wire carries)."""
    return Box(*(_coord(_cells(v, grid), grid) for v in (box.x1, box.y1, box.x2, box.y2)))


class _Reader:
    """Reads the path's varints; a fault is an :class:`InvalidMessage` at the field's path."""

    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.pos, self.path = data, 0, path

    def varint(self, what: str) -> int:
        try:
            value, self.pos = read_uvarint(self.data, self.pos, _MAX_VARINT_BYTES)
        except VarintError as exc:
            if exc.truncated:
                raise InvalidMessage(self.path, f"ends inside {what} at byte {exc.stop}") from None
            raise InvalidMessage(
                self.path, f"{what} at byte {exc.stop} is longer than 5 bytes"
            ) from None
        return value

    def zvarint(self, what: str) -> int:
        z = self.varint(what)
        return unzigzag(z)


class PathType(WireType[TrackPath]):
    """A :class:`TrackPath`, carried as one bin (see the module doc)."""

    def check(self, value: Any, path: str) -> TrackPath:
        if not isinstance(value, TrackPath):
            raise InvalidMessage(path, f"expected a TrackPath, got {type(value).__name__}")
        grid = value.grid
        if isinstance(grid, bool) or not isinstance(grid, int):
            raise InvalidMessage(f"{path}.grid", f"expected an int, got {type(grid).__name__}")
        if not 1 <= grid <= limits.MAX_PATH_GRID:
            raise InvalidMessage(f"{path}.grid", f"{grid} is outside 1..{limits.MAX_PATH_GRID}")
        if len(value.points) > limits.MAX_PATH_POINTS:
            raise InvalidMessage(
                f"{path}.points",
                f"{len(value.points)} points exceeds max of {limits.MAX_PATH_POINTS}",
            )
        previous = 0
        points = []
        for i, p in enumerate(value.points):
            where = f"{path}.points[{i}]"
            if not isinstance(p, PathPoint) or not isinstance(p.box, Box):
                raise InvalidMessage(where, "expected a PathPoint with a Box")
            if isinstance(p.offset_ms, bool) or not isinstance(p.offset_ms, int):
                raise InvalidMessage(f"{where}.offset_ms", "expected an int")
            if not previous <= p.offset_ms <= limits.MAX_PATH_OFFSET_MS:
                raise InvalidMessage(
                    f"{where}.offset_ms",
                    f"{p.offset_ms} is outside {previous}..{limits.MAX_PATH_OFFSET_MS} "
                    "(offsets never decrease)",
                )
            previous = p.offset_ms
            points.append(PathPoint(p.offset_ms, quantise(p.box, grid)))
        return TrackPath(grid, tuple(points))

    def pack(self, value: TrackPath) -> bytes:
        out = bytearray()
        write_uvarint(out, value.grid)
        write_uvarint(out, len(value.points))
        t = x = y = w = h = 0
        for p in value.points:
            cx, cy = _cells(p.box.x1, value.grid), _cells(p.box.y1, value.grid)
            cw = _cells(p.box.x2, value.grid) - cx
            ch = _cells(p.box.y2, value.grid) - cy
            write_uvarint(out, p.offset_ms - t)
            for delta in (cx - x, cy - y, cw - w, ch - h):
                write_svarint(out, delta)
            t, x, y, w, h = p.offset_ms, cx, cy, cw, ch
        return bytes(out)

    def unpack(self, obj: Any, path: str) -> TrackPath:
        if not isinstance(obj, bytes):
            raise InvalidMessage(path, f"expected bytes, got {type(obj).__name__}")
        if len(obj) > limits.MAX_PATH_BYTES:
            raise InvalidMessage(path, f"{len(obj)} bytes exceeds max of {limits.MAX_PATH_BYTES}")
        r = _Reader(obj, path)
        grid = r.varint("the grid")
        if not 1 <= grid <= limits.MAX_PATH_GRID:
            raise InvalidMessage(f"{path}.grid", f"{grid} is outside 1..{limits.MAX_PATH_GRID}")
        n = r.varint("the point count")
        if n > limits.MAX_PATH_POINTS:
            raise InvalidMessage(path, f"{n} points exceeds max of {limits.MAX_PATH_POINTS}")
        top = -(-BOX_UNITS // grid)  # cells of the whole frame (the last may be partial)
        points = []
        t = x = y = w = h = 0
        for i in range(n):
            t += r.varint(f"point {i}'s time")
            x += r.zvarint(f"point {i}'s x1")
            y += r.zvarint(f"point {i}'s y1")
            w += r.zvarint(f"point {i}'s width")
            h += r.zvarint(f"point {i}'s height")
            if t > limits.MAX_PATH_OFFSET_MS:
                raise InvalidMessage(f"{path}.points[{i}]", f"offset {t} ms exceeds the max")
            if min(x, y, w, h) < 0 or x + w > top or y + h > top:
                raise InvalidMessage(
                    f"{path}.points[{i}]", f"box (cells {x}, {y}, {w} x {h}) is outside the frame"
                )
            box = Box(_coord(x, grid), _coord(y, grid), _coord(x + w, grid), _coord(y + h, grid))
            points.append(PathPoint(t, box))
        if r.pos != len(obj):
            raise InvalidMessage(path, f"{len(obj) - r.pos} bytes left after {n} points")
        return TrackPath(grid, tuple(points))
