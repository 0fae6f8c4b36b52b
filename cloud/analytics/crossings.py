"""Line crossings: when a track's reference point goes from one side of a line to the other.

A crossing is a run of the refined path on the line (:mod:`.geometry`) entered from strictly
one side and left to strictly the other side. Points exactly on the line therefore never
change side: a path that comes to the line (or runs along it) and goes back to the side it
came from is not counted, one that steps onto the line and then on to the other side is
counted once, when it leaves the line. A path that starts or ends on the line has not crossed
it (yet): a longer version of the track decides. The line includes its end points; a path that
goes round an end does not cross.

Sides are judged locally where the path meets the line: relative to the line's segment there,
or, at a corner of a polyline, by the wedge the path comes from. ``side > 0`` is *right*: with
y growing downward, the cross product ``d x (q - a)`` of the segment's direction ``d`` and a
point ``q`` is positive on the right of someone walking along ``d`` on the displayed image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from shapely.geometry import LineString

from cloud.analytics.events import CrossingDirection
from cloud.analytics.geometry import FloatArray, Path, at_us, orientation, refine, runs


@dataclass(frozen=True, eq=False)
class CountingLine:
    """A line ready for crossing tests."""

    name: str
    vertices: FloatArray
    """(k + 1, 2) points of the polyline."""
    direction: Literal["left_to_right", "right_to_left"]
    """The crossing that counts as ``in``."""

    @property
    def geometry(self) -> LineString:
        return LineString(self.vertices)

    def side(self, contact: FloatArray, q: FloatArray) -> int:
        """Side (+1 right, -1 left, 0 on the line's extension) of the straight stretch from
        ``q`` to ``contact``, a point of the line, seen from the line near ``contact``."""
        a, b = self.vertices[:-1], self.vertices[1:]
        d = b - a
        rel = np.clip(np.einsum("ij,ij->i", contact - a, d) / np.einsum("ij,ij->i", d, d), 0, 1)
        dist = np.linalg.norm(a + rel[:, None] * d - contact, axis=1)
        k = int(np.argmin(dist))
        corner = None
        if rel[k] <= 1e-9 and k > 0:
            corner = k
        elif rel[k] >= 1 - 1e-9 and k < len(d) - 1:
            corner = k + 1
        v = self.vertices
        s_here = orientation(v[k], v[k + 1], q)
        if corner is None:
            return s_here
        s1 = orientation(v[corner - 1], v[corner], q)
        s2 = orientation(v[corner], v[corner + 1], q)
        if s1 == s2:
            return s1
        # On opposite sides of the two segments: the path comes from the reflex wedge, which
        # is on the side the polyline turns away from.
        turn = orientation(v[corner - 1], v[corner], v[corner + 1])
        if turn == 0:
            return s_here
        return -turn


def crossings(path: Path, line: CountingLine) -> list[tuple[int, CrossingDirection]]:
    """(moment in µs, ``in``/``out``) of every crossing of ``line`` by ``path``, in order."""
    refined = refine(path, line.geometry)
    out: list[tuple[int, CrossingDirection]] = []
    last = len(refined) - 1
    for run in runs(refined.on):
        if run.first == 0 or run.last == last:
            continue  # the path starts or ends on the line: not (yet) a crossing
        came = line.side(refined.xy[run.first], refined.xy[run.first - 1])
        went = line.side(refined.xy[run.last], refined.xy[run.last + 1])
        if came == 0 or went == 0 or came == went:
            continue
        left_to_right = came < 0
        is_in = left_to_right == (line.direction == "left_to_right")
        out.append((at_us(refined.t[run.last]), "in" if is_in else "out"))
    return out
