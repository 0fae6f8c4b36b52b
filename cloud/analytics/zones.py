"""Zone stays: entries, exits and dwell; the stopped-vehicle and wrong-way rules inside them.

A track is inside a zone when its reference point is strictly inside the polygon, outside when
strictly outside; points on the boundary keep the state they follow (as points on a counting
line keep their side, :mod:`.crossings`). The moment of an entry or exit is when the path
leaves the boundary for the other state, interpolated on the segment that meets the boundary
(shapely), so a dwell is the difference of two such moments, exact to the microsecond for a
straight, uniformly timed segment. A track whose first off-boundary point is inside entered at
its first sample (``crossed`` false); an ended track still inside exits at its last sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon

from cloud.analytics.geometry import FloatArray, Path, Refined, at_us, refine


@dataclass(frozen=True)
class Stay:
    """One uninterrupted presence in a zone; ``first``..``last`` index the refined path's
    vertices it spans (entry to exit, or to the end of the path while it is open)."""

    entry_us: int
    entry_crossed: bool
    exit_us: int | None
    exit_crossed: bool
    first: int
    last: int


def stays(path: Path, polygon: Polygon, ended: bool) -> tuple[Refined, list[Stay]]:
    """The refined path (boundary meetings inserted) and the track's stays in ``polygon``."""
    refined = refine(path, polygon.exterior)
    off = ~refined.on
    inside = np.zeros(len(refined), dtype=bool)
    if off.any():
        inside[off] = shapely.contains_xy(polygon, refined.xy[off, 0], refined.xy[off, 1])
    out: list[Stay] = []
    state: bool | None = None
    entry: tuple[int, bool, int] | None = None  # (moment, crossed, first vertex)
    for j in map(int, np.flatnonzero(off)):
        now = bool(inside[j])
        if state is None:
            state = now
            if now:
                entry = (at_us(refined.t[0]), False, 0)
            continue
        if now == state:
            continue
        # Left the boundary (or, if no boundary point was found between two off-boundary
        # points of different states, reached the second one).
        k = j - 1 if refined.on[j - 1] else j
        if now:
            entry = (at_us(refined.t[k]), True, k)
        elif entry is not None:
            out.append(Stay(entry[0], entry[1], at_us(refined.t[k]), True, entry[2], k))
            entry = None
        state = now
    if entry is not None:
        last = len(refined) - 1
        exit_us = at_us(refined.t[last]) if ended else None
        out.append(Stay(entry[0], entry[1], exit_us, False, entry[2], last))
    return refined, out


def stopped_moment(stay: Stay, observed_until_us: int, after_us: int) -> int | None:
    """When a stay reached ``after_us`` of dwell, if the samples show it did: its exit, or for
    an open stay the last sample, is at or after that moment."""
    moment = stay.entry_us + after_us
    until = stay.exit_us if stay.exit_us is not None else observed_until_us
    return moment if until >= moment else None


def wrong_way_moment(
    t: FloatArray, plane: FloatArray, heading: FloatArray, min_distance: float
) -> int | None:
    """The first moment the path ``plane`` (n, 2, metric) at times ``t`` has come back against
    the unit ``heading`` by ``min_distance`` from the furthest point it had reached along it
    (a drawdown of its progress), interpolated on the segment; None if it never does."""
    if len(t) < 2:
        return None
    progress = plane @ heading
    best = progress[0]
    for j in range(1, len(t)):
        if best - progress[j] >= min_distance:
            # linear on the segment j-1 -> j, which starts above best - min_distance
            drop = progress[j - 1] - progress[j]
            u = (progress[j - 1] - (best - min_distance)) / drop if drop > 0 else 1.0
            return at_us(t[j - 1] + min(max(u, 0.0), 1.0) * (t[j] - t[j - 1]))
        best = max(best, progress[j])
    return None
