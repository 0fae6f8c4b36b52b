"""A track's timed box path: simplified for the wire, and read back at any time.

The edge keeps a box per frame of a track; a :class:`~shared.messages.TrackSummary` carries only
the points a reader needs to redraw it within ``tolerance_px``: :func:`simplify` is
Ramer-Douglas-Peucker (Ramer 1972; Douglas & Peucker 1973) with the *synchronous* distance of
Meratnia & de By (2004, "Spatiotemporal compression techniques for moving point objects"):
a dropped point is measured against where linear interpolation in time puts the object at that
point's time, not against the nearest point of the segment. Plain spatial RDP (shapely's
``simplify``) keeps a path's shape but not its timing: a car that waits at a light on a
straight road becomes two endpoints, and interpolating between them moves it at a crawl the
whole time. The distance of a box is the larger of its centre's offset and half its width's or
height's difference (pixels), so a box that grows as it approaches is kept as well as a turn.

:func:`boxes_at` is the inverse: a box at any time, linear in time between points and held
outside them, flagged as interpolated unless a point lies exactly at that time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shared.geometry import Box


@dataclass(frozen=True, slots=True)
class TimedBox:
    """A box seen at ``t_us`` (microseconds)."""

    t_us: int
    box: Box


@dataclass(frozen=True, slots=True)
class BoxAt:
    """A box read back at ``t_us``; ``interpolated`` unless a path point lies at that time."""

    t_us: int
    box: Box
    interpolated: bool


def _arrays(
    points: Sequence[TimedBox], width: int, height: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Times (us) and boxes as pixel rows (cx, cy, w, h)."""
    t = np.array([p.t_us for p in points], np.float64)
    xyxy = np.array([(p.box.x1, p.box.y1, p.box.x2, p.box.y2) for p in points], np.float64)
    xyxy *= (width, height, width, height)
    cwh = np.column_stack(
        (
            (xyxy[:, 0] + xyxy[:, 2]) / 2,
            (xyxy[:, 1] + xyxy[:, 3]) / 2,
            xyxy[:, 2] - xyxy[:, 0],
            xyxy[:, 3] - xyxy[:, 1],
        )
    )
    return t, cwh


def _deviation(
    t: NDArray[np.float64], cwh: NDArray[np.float64], first: int, last: int
) -> NDArray[np.float64]:
    """Synchronous distance (px) of the points strictly between ``first`` and ``last`` from
    the segment joining them, interpolated at each point's time."""
    inner = slice(first + 1, last)
    span = t[last] - t[first]
    frac = (t[inner] - t[first]) / span if span > 0 else np.zeros(last - first - 1)
    expected = cwh[first] + frac[:, None] * (cwh[last] - cwh[first])
    diff = cwh[inner] - expected
    centre = np.hypot(diff[:, 0], diff[:, 1])
    size = np.abs(diff[:, 2:]).max(axis=1) / 2
    out: NDArray[np.float64] = np.maximum(centre, size)
    return out


def simplify(points: Sequence[TimedBox], tolerance_px: float, width: int, height: int) -> list[int]:
    """Indices of the points to keep (ascending; the first and last always), so that every
    dropped point lies within ``tolerance_px`` of the box interpolated in time between the
    kept points around it. Points must be in time order; ``width`` x ``height`` is the frame
    in pixels. ``tolerance_px`` 0 keeps every point that is not exactly on the line."""
    if tolerance_px < 0:
        raise ValueError(f"tolerance must be >= 0 px, got {tolerance_px}")
    n = len(points)
    if n <= 2:
        return list(range(n))
    t, cwh = _arrays(points, width, height)
    if np.any(np.diff(t) < 0):
        raise ValueError("path points must be in time order")
    keep = {0, n - 1}
    stack = [(0, n - 1)]
    while stack:  # iterative: a long track must not hit the recursion limit
        first, last = stack.pop()
        if last - first < 2:
            continue
        dev = _deviation(t, cwh, first, last)
        worst = int(np.argmax(dev))
        if dev[worst] > tolerance_px:
            split = first + 1 + worst
            keep.add(split)
            stack += [(first, split), (split, last)]
    return sorted(keep)


def boxes_at(points: Sequence[TimedBox], times_us: Sequence[int]) -> list[BoxAt]:
    """The box at each time: linear in time between the surrounding points, held before the
    first and after the last. Points must be in time order; of points sharing a time the first
    is used. ``ValueError`` for an empty path."""
    if not points:
        raise ValueError("an empty path has no box at any time")
    t = np.array([p.t_us for p in points], np.int64)
    if np.any(np.diff(t) < 0):
        raise ValueError("path points must be in time order")
    first_of = np.concatenate(([True], np.diff(t) > 0))  # the first point of each time
    t, kept = t[first_of], [p for p, f in zip(points, first_of, strict=True) if f]
    coords = np.array([(p.box.x1, p.box.y1, p.box.x2, p.box.y2) for p in kept], np.float64)
    query = np.asarray(times_us, np.int64)
    exact = np.searchsorted(t, query, side="left")
    out: list[BoxAt] = []
    for q, i in zip(query.tolist(), exact.tolist(), strict=True):
        if i < len(t) and t[i] == q:
            out.append(BoxAt(q, kept[i].box, False))
            continue
        if i == 0 or i == len(t):  # outside the path: held
            out.append(BoxAt(q, kept[min(i, len(t) - 1)].box, True))
            continue
        frac = (q - t[i - 1]) / (t[i] - t[i - 1])
        c = coords[i - 1] + frac * (coords[i] - coords[i - 1])
        out.append(BoxAt(q, Box(*(min(max(float(v), 0.0), 1.0) for v in c)), True))
    return out
