"""The alerts' database access: new events after a cursor, the cursor and quiet state, dead
letters, and the figures of a camera's MQTT state. Blocking (SQLAlchemy Core): call it from a
worker thread in async code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from cloud.alerts.model import INCIDENT_KINDS, Camera, StoredEvent
from cloud.describe.schema import class_name
from cloud.schema import alert_cursors, alert_dead_letters, alert_quiet, analytics_events, cameras

QuietKey = tuple[str, int, str]
"""(rule, camera id, subject)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    rule: str
    target: str
    event_id: int
    payload: dict[str, Any]
    error: str
    attempts: int
    created_us: int
    last_attempt_us: int
    replayed_us: int | None


def _event(m: RowMapping) -> StoredEvent:
    return StoredEvent(
        id=m["id"],
        camera=Camera(m["camera_id"], m["edge_id"], m["camera_name"]),
        # a zone's congestion change belongs to no track (stored as minus the camera id)
        track_id=m["track_id"] if m["track_id"] > 0 else None,
        kind=m["kind"],
        subject=m["subject"] or "",
        ordinal=m["ordinal"],
        at_us=m["at_us"],
        class_id=m["class_id"],
        direction=m["direction"],
        value=m["value"],
        unit=m["unit"],
        scene_version=m["scene_version"],
        created_us=m["created_us"],
        details=m["details"],
    )


def _dead_letter(m: RowMapping) -> DeadLetter:
    return DeadLetter(**{name: m[name] for name in DeadLetter.__slots__})


class AlertStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- events and the dispatcher's position

    def events_after(self, after_id: int, limit: int) -> list[StoredEvent]:
        """Events with ``id > after_id``, by id, with their cameras."""
        e = analytics_events
        query = (
            select(*e.c, cameras.c.edge_id, cameras.c.name.label("camera_name"))
            .join(cameras, cameras.c.id == e.c.camera_id)
            .where(e.c.id > after_id)
            .order_by(e.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_event(row) for row in conn.execute(query).mappings()]

    def newest_event_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.coalesce(func.max(analytics_events.c.id), 0))) or 0)

    def cursor(self, name: str) -> int | None:
        with self.engine.connect() as conn:
            value = conn.scalar(
                select(alert_cursors.c.event_id).where(alert_cursors.c.name == name)
            )
        return None if value is None else int(value)

    def quiet_state(self) -> dict[QuietKey, int]:
        q = alert_quiet
        with self.engine.connect() as conn:
            rows = conn.execute(select(q.c.rule, q.c.camera_id, q.c.subject, q.c.last_at_us))
            return {(r.rule, r.camera_id, r.subject): r.last_at_us for r in rows}

    def advance(self, name: str, event_id: int, quiet: Mapping[QuietKey, int], now_us: int) -> None:
        """Save the cursor and the quiet periods' last alerts, in one transaction."""
        with self.engine.begin() as conn:
            _upsert(
                conn,
                alert_cursors,
                {"name": name},
                {"event_id": event_id, "updated_us": now_us},
            )
            for (rule, camera_id, subject), at_us in quiet.items():
                _upsert(
                    conn,
                    alert_quiet,
                    {"rule": rule, "camera_id": camera_id, "subject": subject},
                    {"last_at_us": at_us},
                )

    # -- dead letters

    def add_dead_letter(
        self,
        *,
        rule: str,
        target: str,
        event_id: int,
        payload: Mapping[str, Any],
        error: str,
        attempts: int,
        now_us: int,
    ) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(alert_dead_letters).values(
                    rule=rule,
                    target=target,
                    event_id=event_id,
                    payload=dict(payload),
                    error=error,
                    attempts=attempts,
                    created_us=now_us,
                    last_attempt_us=now_us,
                    replayed_us=None,
                )
            )
            assert result.inserted_primary_key is not None
            return int(result.inserted_primary_key[0])

    def dead_letters(
        self, *, pending_only: bool = False, before_id: int | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """Newest first; ``pending_only``: not replayed yet."""
        d = alert_dead_letters
        query = select(d).order_by(d.c.id.desc()).limit(limit)
        if pending_only:
            query = query.where(d.c.replayed_us.is_(None))
        if before_id is not None:
            query = query.where(d.c.id < before_id)
        with self.engine.connect() as conn:
            return [_dead_letter(row) for row in conn.execute(query).mappings()]

    def dead_letter(self, letter_id: int) -> DeadLetter | None:
        d = alert_dead_letters
        with self.engine.connect() as conn:
            row = conn.execute(select(d).where(d.c.id == letter_id)).mappings().first()
        return None if row is None else _dead_letter(row)

    def record_replay(self, letter_id: int, now_us: int, error: str | None) -> DeadLetter:
        """One more attempt: delivered (``error`` None: replayed now) or failed again."""
        d = alert_dead_letters
        values: dict[str, Any] = {"attempts": d.c.attempts + 1, "last_attempt_us": now_us}
        if error is None:
            values["replayed_us"] = now_us
        else:
            values["error"] = error
        with self.engine.begin() as conn:
            conn.execute(update(d).where(d.c.id == letter_id).values(**values))
            row = conn.execute(select(d).where(d.c.id == letter_id)).mappings().one()
        return _dead_letter(row)

    # -- a camera's state (MQTT)

    def camera_counts(self, camera_id: int, since_us: int) -> dict[str, dict[str, int]]:
        """Events of the camera at or after ``since_us``: kind -> class name -> count
        (``unknown`` for events without a class)."""
        e = analytics_events
        query = (
            select(e.c.kind, e.c.class_id, func.count())
            .where(e.c.camera_id == camera_id, e.c.at_us >= since_us)
            .group_by(e.c.kind, e.c.class_id)
        )
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for kind, class_id, count in conn.execute(query):
                name = "unknown" if class_id is None else class_name(class_id)
                per_kind = out.setdefault(kind, {})
                per_kind[name] = per_kind.get(name, 0) + int(count)
        return out

    def newest_incident(self, camera: Camera) -> StoredEvent | None:
        e = analytics_events
        query = (
            select(*e.c, cameras.c.edge_id, cameras.c.name.label("camera_name"))
            .join(cameras, cameras.c.id == e.c.camera_id)
            .where(e.c.camera_id == camera.id, e.c.kind.in_(INCIDENT_KINDS))
            .order_by(e.c.at_us.desc(), e.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _event(row)


def _upsert(
    conn: Connection, table: Any, key: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    """Update the row with ``key``, or insert it (one writer: the dispatcher)."""
    where = [table.c[name] == value for name, value in key.items()]
    if conn.execute(update(table).where(*where).values(**values)).rowcount == 0:
        conn.execute(insert(table).values(**key, **values))


def distinct_cameras(events: Iterable[StoredEvent]) -> list[Camera]:
    return list({e.camera.id: e.camera for e in events}.values())
