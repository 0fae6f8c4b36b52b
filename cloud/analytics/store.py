"""Analytics events in the catalog, one row per event key, and the runner's watermarks.

:func:`event_row` flattens an engine event into the columns of ``analytics_events``
(``value``/``unit``: a speed in its unit, a zone stay's dwell and a stop in seconds, a
wrong-way distance in metres or image widths; the rest in ``details``).

:func:`plan` compares a track's fresh analysis with the rows stored for it and says what to
write; :func:`apply` writes it inside the caller's transaction:

- an event whose key is not stored is inserted (``INSERT ... ON CONFLICT DO NOTHING`` on the
  key: a second runner that got there first wins, and only the rows really inserted are
  returned, so counters move once per event);
- an event stored with the same content is left alone (the common case: a growing track
  reports its settled events again);
- the ``speed`` row is updated whenever its value (or moment) changed: it is recomputed from
  the whole track each time. While the track is in progress its key has ordinal 0 (a
  provisional speed: measured on the first seconds it may be far from the final figure);
  once the track has ended (:func:`settle`) the speed has ordinal :data:`SETTLED_SPEED`, a
  new row that replaces the provisional one in the same transaction. So a track has one
  speed row at a time, and its settled speed is *inserted* exactly once (by key, whatever
  the order of its boxes and its end): what the alert dispatcher, which follows inserted
  rows, alerts on. Boxes that arrive after the end correct the settled row in place;
- a stored event whose content changed, or that the analysis no longer reports although it
  lies within the analysed samples' time span, is updated or deleted. This happens only when
  a track's history was rewritten: boxes that arrive late inside its span (an edge draining
  its spool sends track ends before boxes), or a switch between its path and its detections.
  The stored events of a track are then always those of its latest analysis, so a count never
  holds the same crossing twice;
- every row of the track gets the track's current class (the edge's class votes at its end
  may differ from its first sighting's class).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cloud.analytics.events import (
    Event,
    EventKey,
    LineCrossing,
    Speed,
    StoppedVehicle,
    WrongWay,
    ZoneEntry,
    ZoneExit,
)
from cloud.schema import analytics_events, analytics_progress

_IN_CHUNK: Final = 500
#: The ordinal of a track's speed once the track has ended (module docstring).
SETTLED_SPEED: Final = 1
Key = tuple[str, str, int]
"""(kind, subject, ordinal): an event's key within its track."""


@dataclass(frozen=True)
class EventRow:
    """The stored columns of one event (its track and camera aside)."""

    kind: str
    subject: str
    ordinal: int
    at_us: int
    direction: str | None
    value: float | None
    unit: str | None
    scene_version: str
    details: dict[str, Any]

    @property
    def key(self) -> Key:
        return self.kind, self.subject, self.ordinal

    def content(self) -> tuple[Any, ...]:
        return self.at_us, self.direction, self.value, self.unit, self.details


@dataclass(frozen=True)
class StoredEvent:
    id: int
    row: EventRow
    class_id: int | None


def event_row(event: Event) -> EventRow:
    """The row of an engine event."""
    key: EventKey = event.key
    direction: str | None = None
    value: float | None = None
    unit: str | None = None
    details: dict[str, Any] = {}
    if isinstance(event, LineCrossing):
        direction = event.direction
    elif isinstance(event, ZoneEntry):
        details = {"crossed": event.crossed}
    elif isinstance(event, ZoneExit):
        value, unit = event.dwell_us / 1e6, "s"
        details = {"entered_us": event.entered_us, "dwell_us": event.dwell_us,
                   "crossed": event.crossed}  # fmt: skip
    elif isinstance(event, Speed):
        value, unit = float(event.value), event.unit
        details = {"segments": event.segments}
    elif isinstance(event, StoppedVehicle):
        value, unit = (event.at_us - event.since_us) / 1e6, "s"
        details = {"since_us": event.since_us}
    elif isinstance(event, WrongWay):
        value, unit = float(event.distance), event.unit
    return EventRow(
        kind=key.kind,
        subject=key.subject,
        ordinal=key.ordinal,
        at_us=event.at_us,
        direction=direction,
        value=value,
        unit=unit,
        scene_version=event.scene_version,
        details=details,
    )


def settle(rows: Sequence[EventRow], ended: bool) -> list[EventRow]:
    """The rows to store for a track: ``rows`` with, once the track has ended, its speed
    under ordinal :data:`SETTLED_SPEED` (the engine numbers it 0, growing or not)."""
    if not ended:
        return list(rows)
    return [replace(r, ordinal=SETTLED_SPEED) if r.kind == "speed" else r for r in rows]


def stored_events(conn: Connection, track_ids: Iterable[int]) -> dict[int, dict[Key, StoredEvent]]:
    """The stored events of each track, by key."""
    out: dict[int, dict[Key, StoredEvent]] = {}
    ids = sorted(set(track_ids))
    e = analytics_events.c
    for start in range(0, len(ids), _IN_CHUNK):
        rows = conn.execute(
            select(analytics_events).where(e.track_id.in_(ids[start : start + _IN_CHUNK]))
        )
        for r in rows:
            row = EventRow(
                kind=str(r.kind),
                subject=str(r.subject),
                ordinal=int(r.ordinal),
                at_us=int(r.at_us),
                direction=r.direction,
                value=None if r.value is None else float(r.value),
                unit=r.unit,
                scene_version=str(r.scene_version),
                details=dict(r.details or {}),
            )
            stored = StoredEvent(int(r.id), row, None if r.class_id is None else int(r.class_id))
            out.setdefault(int(r.track_id), {})[row.key] = stored
    return out


@dataclass
class Plan:
    """What to write for some tracks (:func:`plan`, :func:`apply`)."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)


def plan(
    out: Plan,
    camera_id: int,
    track_id: int,
    class_id: int | None,
    rows: Sequence[EventRow],
    stored: dict[Key, StoredEvent],
    span: tuple[int, int] | None,
    now_us: int,
) -> None:
    """Add to ``out`` what makes the stored events of a track those of ``rows`` (see the
    module docstring); ``span`` is the time span of the samples analysed."""
    fresh = {r.key: r for r in rows}
    for key, row in fresh.items():
        old = stored.get(key)
        if old is None:
            out.inserts.append(
                {"camera_id": camera_id, "track_id": track_id, "kind": row.kind,
                 "subject": row.subject, "ordinal": row.ordinal, "at_us": row.at_us,
                 "class_id": class_id, "direction": row.direction, "value": row.value,
                 "unit": row.unit, "scene_version": row.scene_version, "created_us": now_us,
                 "details": row.details}
            )  # fmt: skip
        elif old.row.content() != row.content() or old.class_id != class_id:
            out.updates.append(
                {"pk": old.id, "new_at": row.at_us, "new_class": class_id,
                 "new_direction": row.direction, "new_value": row.value, "new_unit": row.unit,
                 "new_version": row.scene_version, "new_details": row.details}
            )  # fmt: skip
    speeds = {key for key in fresh if key[0] == "speed"}
    for key, old in stored.items():
        if key in fresh:
            continue
        if old.row.kind == "speed":
            if speeds:  # the settled speed replaces the provisional one
                out.deletes.append(old.id)
        elif span is not None and span[0] <= old.row.at_us <= span[1]:
            out.deletes.append(old.id)


def _insert(conn: Connection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    e = analytics_events.c
    return (
        dialect.insert(analytics_events)
        .on_conflict_do_nothing(index_elements=[e.track_id, e.kind, e.subject, e.ordinal])
        .returning(e.id, e.camera_id, e.kind, e.subject, e.direction, e.class_id)
    )


def apply(conn: Connection, todo: Plan) -> list[Any]:
    """Write ``todo`` in the caller's transaction; returns the rows really inserted (id,
    camera_id, kind, subject, direction, class_id)."""
    inserted: list[Any] = []
    if todo.inserts:
        inserted = list(conn.execute(_insert(conn), todo.inserts))
    if todo.updates:
        e = analytics_events.c
        conn.execute(
            update(analytics_events)
            .where(e.id == bindparam("pk"))
            .values(
                at_us=bindparam("new_at"),
                class_id=bindparam("new_class"),
                direction=bindparam("new_direction"),
                value=bindparam("new_value"),
                unit=bindparam("new_unit"),
                scene_version=bindparam("new_version"),
                details=bindparam("new_details"),
            ),
            todo.updates,
        )
    for start in range(0, len(todo.deletes), _IN_CHUNK):
        chunk = todo.deletes[start : start + _IN_CHUNK]
        conn.execute(delete(analytics_events).where(analytics_events.c.id.in_(chunk)))
    return inserted


# ------------------------------------------------------------------- watermarks


def watermarks(conn: Connection) -> dict[int, int]:
    """Per camera, the ``tracks.updated_us`` its tracks are analysed up to."""
    p = analytics_progress.c
    return {int(c): int(w) for c, w in conn.execute(select(p.camera_id, p.watermark_us))}


def save_watermark(conn: Connection, camera_id: int, watermark_us: int, now_us: int) -> None:
    """Set a camera's watermark (insert or update), in the caller's transaction."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(analytics_progress).values(
        camera_id=camera_id, watermark_us=watermark_us, updated_us=now_us
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[analytics_progress.c.camera_id],
            set_={"watermark_us": watermark_us, "updated_us": now_us},
        )
    )
