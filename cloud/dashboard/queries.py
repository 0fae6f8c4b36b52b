"""The dashboard's own reads of the catalog (SQLAlchemy Core), for what the JSON API has no
route for: class counts over time, recent tracks, new tracks for the live feed.

Each query is bounded (a time window on an indexed column, a LIMIT) so that a page costs the
same with ten thousand or ten million rows behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, ScalarSelect, and_, func, select, true
from sqlalchemy.engine import Engine

from cloud.schema import cameras, detections, tracks

MAX_LIVE_BATCH: Final = 200


@dataclass(frozen=True)
class ClassBuckets:
    """Tracks per class and time bucket; ``start_us`` of bucket 0, ``bucket_us`` wide."""

    start_us: int
    bucket_us: int
    buckets: int
    counts: dict[int, list[int]]  # class id -> count per bucket

    def totals(self) -> dict[int, int]:
        return {c: sum(v) for c, v in self.counts.items()}


def class_buckets(
    engine: Engine, start_us: int, end_us: int, bucket_us: int, camera_ids: Sequence[int] = ()
) -> ClassBuckets:
    """Road users (tracks) per class by the bucket they were first seen in, ``[start_us,
    end_us)``: one row per track, found through the tracks' ``last_seen_us`` index (a track
    first seen in the window was last seen in it or after). Its class is the track end's
    majority vote, or its first detection's while it is still open."""
    n = max(1, -(-(end_us - start_us) // bucket_us))
    bucket = (tracks.c.first_seen_us - start_us) // bucket_us  # floor division on both
    cls = func.coalesce(tracks.c.class_id, _first_class())
    where = [
        tracks.c.last_seen_us >= start_us,
        tracks.c.first_seen_us >= start_us,
        tracks.c.first_seen_us < end_us,
    ]
    if camera_ids:
        where.append(tracks.c.camera_id.in_(list(camera_ids)))
    inner = select(cls.label("c"), bucket.label("b")).where(and_(*where)).subquery()
    query = select(inner.c.c, inner.c.b, func.count()).group_by(inner.c.c, inner.c.b)
    counts: dict[int, list[int]] = {}
    with engine.connect() as conn:
        for class_id, b, count in conn.execute(query):
            if class_id is not None and 0 <= int(b) < n:
                counts.setdefault(int(class_id), [0] * n)[int(b)] = int(count)
    return ClassBuckets(start_us, bucket_us, n, counts)


@dataclass(frozen=True)
class TrackRow:
    id: int
    camera_id: int
    camera: str
    edge_id: str
    class_id: int | None
    first_seen_us: int
    last_seen_us: int
    ended: bool
    detection_id: int | None
    """A detection of the track with an embedding (its crop), if any yet."""


def _first_class() -> ScalarSelect[Any]:
    """A track's class before its end says (its first detection's)."""
    return (
        select(detections.c.class_id)
        .where(detections.c.track_id == tracks.c.id)
        .order_by(detections.c.id)
        .limit(1)
        .scalar_subquery()
    )


def _track_rows(
    engine: Engine, where: list[ColumnElement[bool]], order: ColumnElement[Any], limit: int
) -> list[TrackRow]:
    crop = (
        select(func.max(detections.c.id))
        .where(detections.c.track_id == tracks.c.id, detections.c.has_embedding)
        .scalar_subquery()
    )
    cls = _first_class()
    query = (
        select(
            tracks.c.id,
            tracks.c.camera_id,
            cameras.c.name,
            cameras.c.edge_id,
            func.coalesce(tracks.c.class_id, cls).label("class_id"),
            tracks.c.first_seen_us,
            tracks.c.last_seen_us,
            tracks.c.ended,
            crop.label("detection_id"),
        )
        .join(cameras, cameras.c.id == tracks.c.camera_id)
        .where(and_(true(), *where))
        .order_by(order)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            TrackRow(
                int(r.id),
                int(r.camera_id),
                str(r.name),
                str(r.edge_id),
                None if r.class_id is None else int(r.class_id),
                int(r.first_seen_us),
                int(r.last_seen_us),
                bool(r.ended),
                None if r.detection_id is None else int(r.detection_id),
            )
            for r in conn.execute(query)
        ]


def tracks_after(engine: Engine, after_id: int, limit: int = MAX_LIVE_BATCH) -> list[TrackRow]:
    """Tracks stored after track ``after_id``, oldest first (the live feed)."""
    return _track_rows(engine, [tracks.c.id > after_id], tracks.c.id, limit)


def tracks_by_ids(engine: Engine, ids: Sequence[int]) -> list[TrackRow]:
    if not ids:
        return []
    return _track_rows(engine, [tracks.c.id.in_(list(ids))], tracks.c.id, len(ids))


def recent_tracks(
    engine: Engine,
    limit: int,
    before_id: int | None = None,
    camera_ids: Sequence[int] = (),
    from_us: int | None = None,
    to_us: int | None = None,
    classes: Sequence[int] = (),
) -> list[TrackRow]:
    """Newest tracks first (by id), a page of ``limit`` before ``before_id``."""
    where: list[ColumnElement[bool]] = []
    if before_id is not None:
        where.append(tracks.c.id < before_id)
    if camera_ids:
        where.append(tracks.c.camera_id.in_(list(camera_ids)))
    if from_us is not None:
        where.append(tracks.c.last_seen_us >= from_us)
    if to_us is not None:
        where.append(tracks.c.first_seen_us < to_us)
    if classes:
        where.append(func.coalesce(tracks.c.class_id, _first_class()).in_(list(classes)))
    return _track_rows(engine, where, tracks.c.id.desc(), limit)


def last_track_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(tracks.c.id), 0))).scalar_one())
