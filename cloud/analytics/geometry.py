"""A track's path as timed reference points, and where that path meets a line or boundary.

The reference point of a box is its bottom centre, ``((x1 + x2) / 2, y2)``: where the object
touches the road. Lines and zones are drawn on the road, and a calibration maps the road
plane, so the contact point is the one point of the box that lies on that plane; the box
centre floats half the object's height above the road, and a tall lorry and a car at the same
place would have different centres (and map to different ground positions).

:func:`refine` inserts into the path every point where it meets a curve (a counting line or a
zone's boundary), found with shapely, with its time interpolated linearly along the segment.
Afterwards each stretch between two consecutive vertices either lies on the curve or has its
interior off it, so a crossing can be judged from the vertices alone: a *run* is a maximal
stretch of vertices on the curve, and the vertices just before and after it say from which
side the path came and to which it went. A vertex counts as on the curve by shapely's exact
predicate (``intersects``), so a sample exactly on a line is on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

Box = tuple[float, float, float, float]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Fraction of a segment within which a found intersection is taken to be the segment's end.
_EPS_U = 1e-9


@dataclass(frozen=True)
class Track:
    """One tracked object as the engine sees it.

    ``key`` names it in event identities (the runner uses the catalog's track id);
    ``samples`` are (time in µs, box normalised [x1, y1, x2, y2]) with strictly increasing
    times; ``ended`` says no sample will follow (the tracker ended it), which closes the zone
    stays it is in. A growing track is the same ``key`` with more samples at its end.
    """

    key: str
    samples: Sequence[tuple[int, Box]]
    class_id: int | None = None
    ended: bool = False

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a track needs a key")
        times = [t for t, _ in self.samples]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError(f"track {self.key}: sample times must increase strictly")
        if any(len(box) != 4 or not all(np.isfinite(box)) for _, box in self.samples):
            raise ValueError(f"track {self.key}: a box is not four finite numbers")


@dataclass(frozen=True, eq=False)
class Path:
    """Timed points: ``xy`` (n, 2) normalised image coordinates, ``t`` (n,) µs (float, so that
    inserted points keep their interpolated time exactly until reported)."""

    xy: FloatArray
    t: FloatArray

    def __len__(self) -> int:
        return len(self.t)


def reference_point(box: Box) -> tuple[float, float]:
    """The bottom centre of a box: its contact point with the road (see the module docs)."""
    x1, _, x2, y2 = box
    return ((x1 + x2) / 2.0, y2)


def track_path(track: Track) -> Path:
    """The track's reference points and times."""
    xy = np.array([reference_point(box) for _, box in track.samples], dtype=np.float64)
    t = np.array([t for t, _ in track.samples], dtype=np.float64)
    return Path(xy=xy.reshape(-1, 2), t=t)


@dataclass(frozen=True, eq=False)
class Refined(Path):
    """A path with its meeting points with one curve inserted; ``on`` flags vertices on it."""

    on: BoolArray


@dataclass(frozen=True)
class Run:
    """Vertices ``first``..``last`` (inclusive) of a refined path lie on the curve."""

    first: int
    last: int


def _pieces(geom: BaseGeometry) -> Iterator[BaseGeometry]:
    if hasattr(geom, "geoms"):
        for part in geom.geoms:
            yield from _pieces(part)
    elif not geom.is_empty:
        yield geom


def _meetings(
    seg: LineString, curve: BaseGeometry
) -> tuple[list[float], list[tuple[float, float]]]:
    """Where segment ``seg`` meets ``curve``: fractions along it of the meeting points, and the
    spans (fractions) where it runs along the curve."""
    points: list[float] = []
    spans: list[tuple[float, float]] = []
    for piece in _pieces(seg.intersection(curve)):
        if isinstance(piece, Point):
            points.append(float(seg.project(piece, normalized=True)))
        elif isinstance(piece, LineString):
            ends = [float(seg.project(Point(c), normalized=True)) for c in piece.coords]
            lo, hi = min(ends), max(ends)
            points += [lo, hi]
            spans.append((lo, hi))
    return points, spans


def _stops(
    seg: LineString, curve: BaseGeometry, on_a: bool, on_b: bool
) -> list[tuple[float, bool]]:
    """The vertices to put after the start of a segment that meets the curve: (fraction along
    it, on the curve), ending with its end (fraction 1)."""
    cuts: list[float] = []
    spans: list[tuple[float, float]] = []
    if seg.length > 0:
        found, spans = _meetings(seg, curve)
        for u in found:
            if (u <= _EPS_U and on_a) or (u >= 1 - _EPS_U and on_b):
                continue  # the segment's own end, already judged exactly
            cuts.append(min(max(u, _EPS_U), 1 - _EPS_U))
    stops: list[tuple[float, bool]] = []
    u_prev, on_prev = 0.0, on_a
    for u, is_on in [(u, True) for u in sorted(set(cuts))] + [(1.0, on_b)]:
        along = any(lo - _EPS_U <= u_prev and u <= hi + _EPS_U for lo, hi in spans)
        if on_prev and is_on and seg.length > 0 and not along:
            stops.append(((u_prev + u) / 2, False))  # a chord between two points of the curve
        stops.append((u, is_on))
        u_prev, on_prev = u, is_on
    return stops


def refine(path: Path, curve: BaseGeometry) -> Refined:
    """``path`` with every point where it meets ``curve`` inserted (see the module docs), and
    a vertex halfway along any stretch that joins two points of the curve off it."""
    if len(path) == 0:
        return Refined(xy=path.xy, t=path.t, on=np.zeros(0, dtype=bool))
    shapely.prepare(curve)  # repeated predicates against the same curve
    on_vertex = [bool(v) for v in shapely.intersects_xy(curve, path.xy[:, 0], path.xy[:, 1])]
    xy: list[FloatArray] = [path.xy[0]]
    t: list[float] = [float(path.t[0])]
    on: list[bool] = [on_vertex[0]]
    segs: list[LineString] = []
    hits = np.zeros(0, dtype=bool)
    if len(path) > 1:
        made = shapely.linestrings(np.stack([path.xy[:-1], path.xy[1:]], axis=1))
        segs = list(np.asarray(made, dtype=object))
        hits = np.asarray(shapely.intersects(made, curve), dtype=bool)
    for i in range(len(path) - 1):
        a, b = path.xy[i], path.xy[i + 1]
        ta, tb = float(path.t[i]), float(path.t[i + 1])
        if not hits[i]:  # most segments: nothing to insert
            xy.append(b)
            t.append(tb)
            on.append(on_vertex[i + 1])
            continue
        for u, is_on in _stops(segs[i], curve, on_vertex[i], on_vertex[i + 1]):
            xy.append(b if u == 1.0 else a + u * (b - a))
            t.append(tb if u == 1.0 else ta + u * (tb - ta))
            on.append(is_on)
    return Refined(xy=np.array(xy).reshape(-1, 2), t=np.array(t), on=np.array(on, dtype=bool))


def runs(on: BoolArray) -> list[Run]:
    """Maximal stretches of consecutive ``True`` in ``on``."""
    out: list[Run] = []
    start: int | None = None
    for i, flag in enumerate(on):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append(Run(start, i - 1))
            start = None
    if start is not None:
        out.append(Run(start, len(on) - 1))
    return out


def orientation(a: FloatArray, b: FloatArray, q: FloatArray) -> int:
    """Exact sign of the cross product ``(b - a) x (q - a)``: +1 when ``q`` is right of the
    directed line a -> b on the displayed image (y down), -1 left, 0 on it. Exact for any
    floats (rational arithmetic where rounding could flip the sign), like shapely's own
    predicates, so it agrees with them about which points are on a line."""
    left = (b[0] - a[0]) * (q[1] - a[1])
    right = (b[1] - a[1]) * (q[0] - a[0])
    det = left - right
    if abs(det) > 1e-15 * (abs(left) + abs(right)):
        return 1 if det > 0 else -1
    ax, ay, bx, by = (Fraction(float(v)) for v in (a[0], a[1], b[0], b[1]))
    qx, qy = Fraction(float(q[0])), Fraction(float(q[1]))
    exact = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
    return (exact > 0) - (exact < 0)


def at_us(t: float) -> int:
    """A reported moment: the interpolated time rounded to the microsecond."""
    return round(t)
