"""The read side of the analytics events: pages, count series, a window's figures, and the
congestion windows.

Plain SQLAlchemy Core over ``analytics_events`` and ``congestion_windows`` (SQLite and
PostgreSQL alike); each function
takes the caller's connection. Times are microseconds since the Unix epoch and filters are
half-open (``from_us <= at_us < to_us``). Event lists are newest first, paged by keyset on
``(at_us desc, id desc)`` with the catalog's opaque cursor (:func:`cloud.catalog.encode_cursor`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select

from cloud.analytics.scenes import current_scene
from cloud.catalog import decode_cursor, encode_cursor
from cloud.schema import analytics_events, cameras, congestion_windows

_IN_CHUNK: Final = 500
INCIDENT_KINDS: Final = ("stopped_vehicle", "wrong_way")


@dataclass(frozen=True)
class EventRecord:
    id: int
    camera_id: int
    camera: str
    edge_id: str
    track_id: int | None
    """None for an event of no track (a zone's congestion change)."""
    kind: str
    subject: str
    ordinal: int
    at_us: int
    class_id: int | None
    direction: str | None
    value: float | None
    unit: str | None
    scene_version: str
    created_us: int
    details: dict[str, Any]


def events_page(
    conn: Connection,
    kinds: Sequence[str],
    camera_ids: Sequence[int] | None,
    classes: Sequence[int] | None,
    from_us: int | None,
    to_us: int | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[EventRecord], str | None]:
    """A page of events of ``kinds``, newest first, and the next page's cursor (None: last
    page). :class:`cloud.catalog_records.InvalidCursor` for a cursor this API did not make."""
    e = analytics_events.c
    where: list[ColumnElement[bool]] = [e.kind.in_(list(kinds))]
    if camera_ids is not None:
        where.append(e.camera_id.in_(list(camera_ids)))
    if classes is not None:
        where.append(e.class_id.in_(list(classes)))
    if from_us is not None:
        where.append(e.at_us >= from_us)
    if to_us is not None:
        where.append(e.at_us < to_us)
    if cursor:
        at, last_id = decode_cursor(cursor)
        where.append(or_(e.at_us < at, and_(e.at_us == at, e.id < last_id)))
    rows = conn.execute(
        select(analytics_events, cameras.c.name.label("camera"), cameras.c.edge_id)
        .join(cameras, cameras.c.id == e.camera_id)
        .where(*where)
        .order_by(e.at_us.desc(), e.id.desc())
        .limit(limit + 1)
    ).all()
    items = [
        EventRecord(
            id=int(r.id), camera_id=int(r.camera_id), camera=str(r.camera),
            edge_id=str(r.edge_id), track_id=int(r.track_id) if r.track_id > 0 else None,
            kind=str(r.kind),
            subject=str(r.subject), ordinal=int(r.ordinal), at_us=int(r.at_us),
            class_id=None if r.class_id is None else int(r.class_id), direction=r.direction,
            value=None if r.value is None else float(r.value), unit=r.unit,
            scene_version=str(r.scene_version), created_us=int(r.created_us),
            details=dict(r.details or {}),
        )
        for r in rows[:limit]
    ]  # fmt: skip
    more = len(rows) > limit
    return items, encode_cursor(items[-1].at_us, items[-1].id) if more and items else None


def count_buckets(
    conn: Connection,
    camera_id: int,
    kind: str,
    subject: str,
    classes: Sequence[int] | None,
    start_us: int,
    end_us: int,
    bucket_us: int,
) -> list[tuple[int, int | None, str | None, int]]:
    """Events of ``kind`` on ``subject`` in ``[start_us, end_us)`` counted per bucket (index
    from ``start_us``), class and direction."""
    e = analytics_events.c
    bucket = ((e.at_us - start_us) // bucket_us).label("b")
    where: list[ColumnElement[bool]] = [
        e.camera_id == camera_id,
        e.kind == kind,
        e.subject == subject,
        e.at_us >= start_us,
        e.at_us < end_us,
    ]
    if classes is not None:
        where.append(e.class_id.in_(list(classes)))
    inner = select(bucket, e.class_id, e.direction).where(*where).subquery()
    rows = conn.execute(
        select(inner.c.b, inner.c.class_id, inner.c.direction, func.count()).group_by(
            inner.c.b, inner.c.class_id, inner.c.direction
        )
    )
    return [(int(b), None if c is None else int(c), d, int(n)) for b, c, d, n in rows]


@dataclass(frozen=True)
class Incident:
    kind: str
    subject: str
    track_id: int
    at_us: int
    class_id: int | None


@dataclass(frozen=True)
class WindowFigures:
    """What the analytics found on one camera in one time window (for the describer)."""

    scene_version: str
    calibrated: bool
    crossings: dict[tuple[str, str, int | None], int]
    """(line, direction, class id) -> crossings."""
    zone_entries: dict[tuple[str, int | None], int]
    """(zone, class id) -> entries."""
    incidents: list[Incident]
    speeds: dict[int, tuple[float, str]] = field(default_factory=dict)
    """Track id -> (its measured speed, unit), for the tracks asked about."""


def window_figures(
    conn: Connection, camera_id: int, from_us: int, to_us: int, track_ids: Sequence[int]
) -> WindowFigures | None:
    """The window's figures, or None when the camera has no scene."""
    scene = current_scene(conn, camera_id)
    if scene is None:
        return None
    e = analytics_events.c
    in_window = (e.camera_id == camera_id, e.at_us >= from_us, e.at_us < to_us)
    crossings: Counter[tuple[str, str, int | None]] = Counter()
    entries: Counter[tuple[str, int | None]] = Counter()
    incidents: list[Incident] = []
    rows = conn.execute(
        select(e.kind, e.subject, e.direction, e.class_id, e.track_id, e.at_us)
        .where(*in_window, e.kind.in_(["line_crossing", "zone_entry", *INCIDENT_KINDS]))
        .order_by(e.at_us, e.id)
    )
    for kind, subject, direction, class_id, track_id, at_us in rows:
        cls = None if class_id is None else int(class_id)
        if kind == "line_crossing":
            crossings[(str(subject), str(direction), cls)] += 1
        elif kind == "zone_entry":
            entries[(str(subject), cls)] += 1
        else:
            incidents.append(Incident(str(kind), str(subject), int(track_id), int(at_us), cls))
    speeds: dict[int, tuple[float, str]] = {}
    ids = sorted(set(track_ids))
    for start in range(0, len(ids), _IN_CHUNK):
        for track_id, value, unit in conn.execute(
            select(e.track_id, e.value, e.unit).where(
                e.kind == "speed", e.track_id.in_(ids[start : start + _IN_CHUNK])
            )
        ):
            if value is not None:
                speeds[int(track_id)] = (float(value), str(unit))
    return WindowFigures(
        scene_version=scene.version,
        calibrated=scene.body.get("calibration") is not None,
        crossings=dict(crossings),
        zone_entries=dict(entries),
        incidents=incidents,
        speeds=speeds,
    )


@dataclass(frozen=True)
class CongestionRecord:
    """A stored congestion window (:mod:`cloud.analytics.congestion_store`)."""

    id: int
    camera_id: int
    zone: str
    start_us: int
    window_us: int
    occupancy: float
    mean_speed: float | None
    speed_unit: str
    vehicles: int
    level: str
    provisional: bool
    scene_version: str
    updated_us: int


def congestion_page(
    conn: Connection,
    camera_id: int,
    zone: str | None,
    from_us: int | None,
    to_us: int | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[CongestionRecord], str | None]:
    """A page of the camera's congestion windows starting in ``[from_us, to_us)``, newest
    first (keyset on ``(start_us desc, id desc)``), and the next page's cursor (None: last
    page). :class:`cloud.catalog_records.InvalidCursor` for a cursor this API did not make."""
    w = congestion_windows.c
    where: list[ColumnElement[bool]] = [w.camera_id == camera_id]
    if zone is not None:
        where.append(w.zone == zone)
    if from_us is not None:
        where.append(w.start_us >= from_us)
    if to_us is not None:
        where.append(w.start_us < to_us)
    if cursor:
        start, last_id = decode_cursor(cursor)
        where.append(or_(w.start_us < start, and_(w.start_us == start, w.id < last_id)))
    rows = conn.execute(
        select(congestion_windows)
        .where(*where)
        .order_by(w.start_us.desc(), w.id.desc())
        .limit(limit + 1)
    ).all()
    items = [
        CongestionRecord(
            id=int(r.id), camera_id=int(r.camera_id), zone=str(r.zone),
            start_us=int(r.start_us), window_us=int(r.window_us), occupancy=float(r.occupancy),
            mean_speed=None if r.mean_speed is None else float(r.mean_speed),
            speed_unit=str(r.speed_unit), vehicles=int(r.vehicles), level=str(r.level),
            provisional=bool(r.provisional), scene_version=str(r.scene_version),
            updated_us=int(r.updated_us),
        )
        for r in rows[:limit]
    ]  # fmt: skip
    more = len(rows) > limit
    return items, encode_cursor(items[-1].start_us, items[-1].id) if more and items else None
