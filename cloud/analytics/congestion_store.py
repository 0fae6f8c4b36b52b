"""Congestion windows in the catalog, their closing, and the congestion-change events.

:func:`refresh` runs inside the analytics runner's batch transaction, after the batch's events
are stored (so windows, events and the watermark commit together, and a crash half-way leaves
none of them):

- **Windows**: the windows the batch's tracks touched (:func:`.congestion_windows.touched`)
  are computed again (:func:`.congestion_windows.compute`) for every zone of the camera's
  current scene. ``congestion_windows`` holds one row per (camera, zone, window start) with a
  vehicle present, upserted by that key and written only when its content changed; a window
  computed again without any vehicle loses its row. So a window without a row had no vehicle
  in the zone (free, occupancy 0), and computing the same data again changes nothing.
- **Open windows**: a window is *closed* once the camera's newest capture time seen (the
  newest ``tracks.last_seen_us`` of the tracks the runner analysed; an edge's clock that runs
  far ahead closes windows early) has reached its end. The frontier (the end of the newest
  closed window) is kept in ``analytics_progress.congestion_us`` and only moves forward. An
  open window is computed and stored with ``provisional`` true, for live figures; when the
  frontier passes it, it is computed again and becomes final. Late data computes closed
  windows again like open ones.
- **Change events**: when a closed window's level differs from the window before it (a window
  without a row: free; an ``unknown`` window is passed over, at most :data:`UNKNOWN_HOLD` of
  them, and makes no event itself), an ``analytics_events`` row of kind ``congestion`` marks
  it: ``at_us`` the window's start, ``subject`` the zone, ``direction`` the new level,
  ``value`` the occupancy (``unit`` vehicles), ``details`` the level, the previous level and
  the window's figures. It belongs to no track: ``track_id`` is minus the camera id, and the
  ordinal is the window's index (start / length), which makes the event's key. The alert
  dispatcher follows inserted rows; when late data change a window, its change event is
  updated in place if the level stays, deleted if there is no longer a change, and deleted and
  inserted again (a new id, so rules see it) if the new level differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cloud.analytics.congestion_windows import Figures, WindowSpec, compute
from cloud.analytics.engine import CompiledScene
from cloud.schema import analytics_events, analytics_progress, congestion_windows

EVENT_KIND: Final = "congestion"
#: Unknown windows passed over when looking for the level a window changed from.
UNKNOWN_HOLD: Final = 10
#: The longest window (analytics.congestion_window_s at most 3600 s), in microseconds.
_LONGEST_WINDOW_US: Final = 3600 * 1_000_000
#: The levels as numbers (the Prometheus gauge).
LEVEL_VALUES: Final = {"unknown": -1.0, "free": 0.0, "slow": 1.0, "jammed": 2.0}


@dataclass(frozen=True)
class WindowRow:
    """The stored content of one window of one zone."""

    window_us: int
    occupancy: float
    mean_speed: float | None
    speed_unit: str
    vehicles: int
    level: str
    provisional: bool
    scene_version: str

    @classmethod
    def of(
        cls, f: Figures, spec: WindowSpec, unit: str, provisional: bool, version: str
    ) -> WindowRow:
        return cls(spec.window_us, f.occupancy, f.mean_speed, unit, f.vehicles, f.level,
                   provisional, version)  # fmt: skip


@dataclass
class Refreshed:
    """What :func:`refresh` did."""

    windows: int = 0
    """Window rows inserted, updated or deleted."""
    changes: list[tuple[str, str]] = field(default_factory=list)
    """(zone, level) of the change events inserted."""
    latest: dict[str, str] = field(default_factory=dict)
    """Zone -> level of the newest closed window, for every zone when that window is another."""


def frontier(conn: Connection, camera_id: int) -> int | None:
    """The end of the camera's newest closed window (None before its first)."""
    p = analytics_progress.c
    value = conn.scalar(select(p.congestion_us).where(p.camera_id == camera_id))
    return None if value is None else int(value)


def _stored(conn: Connection, camera_id: int, zone: str, lo: int, hi: int) -> dict[int, WindowRow]:
    w = congestion_windows.c
    rows = conn.execute(
        select(w.start_us, w.window_us, w.occupancy, w.mean_speed, w.speed_unit, w.vehicles,
               w.level, w.provisional, w.scene_version)
        .where(w.camera_id == camera_id, w.zone == zone, w.start_us >= lo, w.start_us < hi)
    )  # fmt: skip
    return {
        int(r[0]): WindowRow(int(r[1]), float(r[2]), None if r[3] is None else float(r[3]),
                             str(r[4]), int(r[5]), str(r[6]), bool(r[7]), str(r[8]))
        for r in rows
    }  # fmt: skip


def _reopen(conn: Connection, camera_id: int, old: int, closed: int) -> dict[str, set[int]]:
    """Zone -> starts of the provisional windows that moving the frontier from ``old`` to
    ``closed`` closes (they were open at ``old``: they end after it)."""
    w = congestion_windows.c
    out: dict[str, set[int]] = {}
    for zone, start in conn.execute(
        select(w.zone, w.start_us).where(
            w.camera_id == camera_id,
            w.start_us >= old - _LONGEST_WINDOW_US,
            w.start_us < closed,
            w.provisional.is_(True),
            w.start_us + w.window_us <= closed,
        )
    ):
        out.setdefault(str(zone), set()).add(int(start))
    return out


def _dialect(conn: Connection) -> Any:
    return postgresql if conn.dialect.name == "postgresql" else sqlite


def _write(
    conn: Connection, camera_id: int, zone: str, start: int, row: WindowRow | None, now_us: int
) -> None:
    w = congestion_windows
    if row is None:
        conn.execute(
            delete(w).where(w.c.camera_id == camera_id, w.c.zone == zone, w.c.start_us == start)
        )
        return
    values = {**asdict(row), "updated_us": now_us}
    stmt = _dialect(conn).insert(w).values(camera_id=camera_id, zone=zone, start_us=start, **values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[w.c.camera_id, w.c.zone, w.c.start_us], set_=values
        )
    )


def level_at(rows: Mapping[int, WindowRow], start: int) -> str:
    return rows[start].level if start in rows else "free"


def previous_level(rows: Mapping[int, WindowRow], start: int, window_us: int) -> str:
    """The level the window at ``start`` follows: the one before it, unknown ones passed over
    (at most :data:`UNKNOWN_HOLD`; beyond, free)."""
    for i in range(1, UNKNOWN_HOLD + 2):
        level = level_at(rows, start - i * window_us)
        if level != "unknown":
            return level
    return "free"


def _followers(rows: Mapping[int, WindowRow], start: int, window_us: int) -> list[int]:
    """The windows whose change event depends on the window at ``start``: the next one, and
    past unknown ones the first that is not."""
    out = []
    for i in range(1, UNKNOWN_HOLD + 2):
        out.append(start + i * window_us)
        if level_at(rows, out[-1]) != "unknown":
            break
    return out


def _sync_changes(
    conn: Connection,
    camera_id: int,
    zone: str,
    starts: set[int],
    rows: Mapping[int, WindowRow],
    spec: WindowSpec,
    version: str,
    now_us: int,
) -> list[str]:
    """Make the stored change events of ``zone`` at ``starts`` (closed windows) those the
    windows say (module docstring); returns the levels of the events inserted."""
    e = analytics_events.c
    existing = {
        int(r.at_us): r
        for r in conn.execute(
            select(e.id, e.at_us, e.direction, e.value, e.details, e.scene_version).where(
                e.camera_id == camera_id,
                e.track_id == -camera_id,
                e.kind == EVENT_KIND,
                e.subject == zone,
                e.at_us.in_(sorted(starts)),
            )
        )
    }
    inserts: list[dict[str, Any]] = []
    for start in sorted(starts):
        level, before = level_at(rows, start), previous_level(rows, start, spec.window_us)
        old = existing.get(start)
        if level == "unknown" or level == before:
            if old is not None:
                conn.execute(delete(analytics_events).where(e.id == old.id))
            continue
        row = rows.get(start)
        details = {
            "level": level,
            "previous": before,
            "window_s": spec.window_us / 1e6,
            "vehicles": 0 if row is None else row.vehicles,
            "mean_speed": None if row is None else row.mean_speed,
            "speed_unit": None if row is None else row.speed_unit,
        }
        value = 0.0 if row is None else row.occupancy
        scene = version if row is None else row.scene_version
        if old is not None and old.direction == level:
            if (old.value, dict(old.details or {}), old.scene_version) != (value, details, scene):
                conn.execute(
                    update(analytics_events)
                    .where(e.id == old.id)
                    .values(value=value, details=details, scene_version=scene)
                )
            continue
        if old is not None:  # another level: a new event, which the alert rules see
            conn.execute(delete(analytics_events).where(e.id == old.id))
        inserts.append(
            {"camera_id": camera_id, "track_id": -camera_id, "kind": EVENT_KIND,
             "subject": zone, "ordinal": start // spec.window_us, "at_us": start,
             "class_id": None, "direction": level, "value": value, "unit": "vehicles",
             "scene_version": scene, "created_us": now_us, "details": details}
        )  # fmt: skip
    if not inserts:
        return []
    stmt = (
        _dialect(conn)
        .insert(analytics_events)
        .on_conflict_do_nothing(index_elements=[e.track_id, e.kind, e.subject, e.ordinal])
        .returning(e.direction)
    )
    return [str(r.direction) for r in conn.execute(stmt, inserts)]


def refresh(
    conn: Connection,
    camera_id: int,
    scene: CompiledScene,
    touched: Mapping[str, set[int]],
    newest_us: int,
    spec: WindowSpec,
    now_us: int,
) -> Refreshed:
    """Bring the camera's windows and change events up to date after a batch (in the
    caller's transaction): the windows ``touched`` (zone -> starts), those the frontier
    closes now, given the newest capture time ``newest_us`` the batch saw."""
    out = Refreshed()
    w = spec.window_us
    old = frontier(conn, camera_id)
    closed = spec.start(newest_us) if old is None else max(old, spec.start(newest_us))
    moved = closed != old  # the newest closed window is another: every zone's gauge
    advanced = old is not None and closed > old
    reopen = _reopen(conn, camera_id, old, closed) if old is not None and advanced else {}
    for zone in scene.zones:
        starts = set(touched.get(zone.name, ())) | reopen.get(zone.name, set())
        if not starts and not moved:
            continue
        anchors = starts | {closed - w} | ({old} if advanced and old is not None else set())
        lo, hi = min(anchors) - (UNKNOWN_HOLD + 1) * w, max(anchors) + (UNKNOWN_HOLD + 2) * w
        rows = _stored(conn, camera_id, zone.name, lo, hi)
        unit = zone.congestion.unit
        for start, f in compute(conn, camera_id, zone.name, zone.congestion, starts, spec).items():
            row = (
                WindowRow.of(f, spec, unit, start + w > closed, scene.version)
                if f.vehicles
                else None
            )
            if row != rows.get(start):
                _write(conn, camera_id, zone.name, start, row, now_us)
                out.windows += 1
                if row is None:
                    del rows[start]
                else:
                    rows[start] = row
        checks = set(starts)
        for start in starts:
            checks.update(_followers(rows, start, w))
        if advanced and old is not None:
            checks.add(old)  # the first window closed now follows the last closed before
        closed_checks = {s for s in checks if s + w <= closed}
        if closed_checks:
            levels = _sync_changes(
                conn, camera_id, zone.name, closed_checks, rows, spec, scene.version, now_us
            )
            out.changes += [(zone.name, level) for level in levels]
        if moved:
            out.latest[zone.name] = level_at(rows, closed - w)
    if closed != old:
        p = analytics_progress.c
        conn.execute(
            update(analytics_progress).where(p.camera_id == camera_id).values(congestion_us=closed)
        )
    return out
