"""Reading a track-level stream back: a track's box at every step, and objects in view.

A protocol 4 edge sends a track's path as the points of a simplified path
(:class:`~shared.messages.TrackSummary`, stored as sightings flagged ``path_point``) instead of
a box per frame. :func:`track_path` redraws it: the track's sightings (path points and any
other boxes) at their own times, and between them a box every ``step_us`` interpolated in time
(:func:`shared.paths.boxes_at`), flagged as interpolated.

:func:`objects_in_view` counts objects per class without per-frame counts: the mean number of
tracks of each class whose ``[first_seen, last_seen]`` overlaps each window, i.e. the tracks'
overlap with the window over its length (a car in view for the whole window counts 1, for half
of it 0.5). This is what the edge's ``FrameCounts`` averaged over the window would say, as far
as the tracker saw every object.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, select

from cloud.schema import detections, tracks
from shared.geometry import Box
from shared.paths import TimedBox, boxes_at

#: Boxes one track path read returns at most (sightings and interpolated steps).
MAX_PATH_BOXES: Final = 10_000
#: Windows one objects-in-view read returns at most.
MAX_VIEW_WINDOWS: Final = 10_000


class TooManyBoxes(ValueError):
    """A read that would return more than its cap (``limit``): ask for a coarser step."""

    def __init__(self, what: str, wanted: int, limit: int) -> None:
        self.wanted, self.limit = wanted, limit
        super().__init__(f"{wanted} {what} exceeds max of {limit}")


@dataclass(frozen=True)
class PathBox:
    """A track's box at ``ts_us``; ``interpolated`` unless a sighting lies at that time."""

    ts_us: int
    box: tuple[float, float, float, float]
    interpolated: bool


@dataclass(frozen=True)
class ViewWindow:
    """Objects in view in ``[start_us, end_us)``: per class id, the mean count over it."""

    start_us: int
    end_us: int
    classes: dict[int, float]


def track_path(conn: Connection, track_id: int, step_us: int) -> list[PathBox] | None:
    """The track's sightings in time order, with boxes every ``step_us`` between the first and
    the last interpolated; empty for a track without sightings, None for no such track.
    :class:`TooManyBoxes` past :data:`MAX_PATH_BOXES`."""
    if step_us <= 0:
        raise ValueError(f"step must be positive, got {step_us} us")
    if conn.execute(select(tracks.c.id).where(tracks.c.id == track_id)).first() is None:
        return None
    rows = conn.execute(
        select(
            detections.c.ts_us,
            detections.c.x1,
            detections.c.y1,
            detections.c.x2,
            detections.c.y2,
        )
        .where(detections.c.track_id == track_id)
        .order_by(detections.c.ts_us, detections.c.id)
    ).all()
    if not rows:
        return []
    points = [TimedBox(int(r.ts_us), Box(r.x1, r.y1, r.x2, r.y2)) for r in rows]
    first, last = points[0].t_us, points[-1].t_us
    steps = (last - first) // step_us + 1
    if steps + len(points) > MAX_PATH_BOXES:
        raise TooManyBoxes("boxes", steps + len(points), MAX_PATH_BOXES)
    times = sorted({p.t_us for p in points} | set(range(first, last + 1, step_us)))
    return [
        PathBox(b.t_us, (b.box.x1, b.box.y1, b.box.x2, b.box.y2), b.interpolated)
        for b in boxes_at(points, times)
    ]


def objects_in_view(
    conn: Connection,
    camera_ids: list[int] | None,
    from_us: int,
    to_us: int,
    window_us: int,
) -> list[ViewWindow]:
    """Mean objects in view per class in each window of ``[from_us, to_us)`` (the last window
    may be shorter), from the tracks of the cameras (None: all). Tracks without a class are
    left out. :class:`TooManyBoxes` past :data:`MAX_VIEW_WINDOWS` windows."""
    if window_us <= 0 or to_us <= from_us:
        raise ValueError("need a positive window and from < to")
    n = -(-(to_us - from_us) // window_us)
    if n > MAX_VIEW_WINDOWS:
        raise TooManyBoxes("windows", n, MAX_VIEW_WINDOWS)
    query = select(tracks.c.class_id, tracks.c.first_seen_us, tracks.c.last_seen_us).where(
        tracks.c.first_seen_us < to_us,
        tracks.c.last_seen_us >= from_us,
        tracks.c.class_id.is_not(None),
    )
    if camera_ids is not None:
        query = query.where(tracks.c.camera_id.in_(camera_ids))
    seen: dict[int, list[float]] = defaultdict(lambda: [0.0] * n)  # class -> us in view
    for cls, first, last in conn.execute(query):
        lo, hi = max(int(first), from_us), min(int(last), to_us)
        k = (lo - from_us) // window_us
        while k < n:
            start = from_us + k * window_us
            end = min(start + window_us, to_us)
            if start > hi:
                break
            seen[int(cls)][k] += max(min(hi, end) - max(lo, start), 0)
            k += 1
    out = []
    for k in range(n):
        start = from_us + k * window_us
        end = min(start + window_us, to_us)
        out.append(
            ViewWindow(
                start, end, {c: us[k] / (end - start) for c, us in sorted(seen.items()) if us[k]}
            )
        )
    return out
