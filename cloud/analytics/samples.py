"""What the analytics runner reads of the catalog: changed tracks, and each track's samples.

The change feed is ``tracks.updated_us`` (the ingest writer's clock when it last inserted or
changed the track or gave it a sighting; :mod:`cloud.project`), read per camera in
``(updated_us, id)`` order from a keyset position.

A track's samples (:func:`track_samples`) are the boxes of its detections in time order, one
per capture time (a box stored twice, by a re-sent frame of a reset spool, counts once: the
first row). An ended track whose ``TrackEnd`` path holds more boxes than it has detections
(boxes not sent, or not arrived yet) is read from that path instead, its boxes spread evenly
over ``[first_seen_us, last_seen_us]`` (the edge thins the path evenly by frame, so at a
steady frame rate evenly in time): an approximation, replaced by the detections once they
outnumber it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, and_, or_, select

from cloud.analytics.geometry import Box, Track
from cloud.schema import detections, tracks

_IN_CHUNK: Final = 500


@dataclass(frozen=True)
class ChangedTrack:
    """A row of the change feed."""

    id: int
    camera_id: int
    class_id: int | None
    first_seen_us: int
    last_seen_us: int
    ended: bool
    path: Any
    updated_us: int

    @property
    def position(self) -> tuple[int, int]:
        """Its place in the feed: ``(updated_us, id)``."""
        return self.updated_us, self.id


def changed_tracks(
    conn: Connection, camera_id: int, after: tuple[int, int], limit: int
) -> list[ChangedTrack]:
    """Tracks of the camera after ``after`` = ``(updated_us, id)`` in feed order."""
    updated, track_id = after
    rows = conn.execute(
        select(
            tracks.c.id,
            tracks.c.camera_id,
            tracks.c.class_id,
            tracks.c.first_seen_us,
            tracks.c.last_seen_us,
            tracks.c.ended,
            tracks.c.path,
            tracks.c.updated_us,
        )
        .where(
            tracks.c.camera_id == camera_id,
            or_(
                tracks.c.updated_us > updated,
                and_(tracks.c.updated_us == updated, tracks.c.id > track_id),
            ),
        )
        .order_by(tracks.c.updated_us, tracks.c.id)
        .limit(limit)
    )
    return [
        ChangedTrack(
            id=int(r.id),
            camera_id=int(r.camera_id),
            class_id=None if r.class_id is None else int(r.class_id),
            first_seen_us=int(r.first_seen_us),
            last_seen_us=int(r.last_seen_us),
            ended=bool(r.ended),
            path=r.path,
            updated_us=int(r.updated_us),
        )
        for r in rows
    ]


def _path_boxes(path: Any) -> list[Box]:
    """The boxes of a stored path; an unreadable path is no path."""
    if not isinstance(path, list):
        return []
    boxes: list[Box] = []
    for item in path:
        if not (isinstance(item, list) and len(item) == 4):
            return []
        try:
            x1, y1, x2, y2 = (float(v) for v in item)
        except (TypeError, ValueError):
            return []
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            return []
        boxes.append((x1, y1, x2, y2))
    return boxes


def path_samples(row: ChangedTrack) -> list[tuple[int, Box]]:
    """A TrackEnd path's boxes at times spread evenly over the track's span (distinct times:
    boxes that would share a microsecond keep the first)."""
    boxes = _path_boxes(row.path)
    if not boxes:
        return []
    if len(boxes) == 1:
        return [(row.last_seen_us, boxes[0])]
    span = row.last_seen_us - row.first_seen_us
    out: list[tuple[int, Box]] = []
    for i, box in enumerate(boxes):
        t = row.first_seen_us + round(span * i / (len(boxes) - 1))
        if not out or t > out[-1][0]:
            out.append((t, box))
    return out


def detection_samples(
    conn: Connection, track_ids: Sequence[int]
) -> dict[int, list[tuple[int, Box]]]:
    """Each track's detection boxes in time order, one per capture time."""
    out: dict[int, list[tuple[int, Box]]] = defaultdict(list)
    ids = sorted(set(track_ids))
    for start in range(0, len(ids), _IN_CHUNK):
        rows = conn.execute(
            select(
                detections.c.track_id,
                detections.c.ts_us,
                detections.c.x1,
                detections.c.y1,
                detections.c.x2,
                detections.c.y2,
            )
            .where(detections.c.track_id.in_(ids[start : start + _IN_CHUNK]))
            .order_by(detections.c.track_id, detections.c.ts_us, detections.c.id)
        )
        for r in rows:
            samples = out[int(r.track_id)]
            ts = int(r.ts_us)
            if samples and samples[-1][0] == ts:
                continue
            samples.append((ts, (float(r.x1), float(r.y1), float(r.x2), float(r.y2))))
    return dict(out)


def track_samples(row: ChangedTrack, boxes: list[tuple[int, Box]]) -> Track:
    """The engine's view of a track: its detection boxes, or its path where that is richer."""
    samples = boxes
    if row.ended:
        from_path = path_samples(row)
        if len(from_path) > len(boxes):
            samples = from_path
    return Track(str(row.id), samples, row.class_id, row.ended)
