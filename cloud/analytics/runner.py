"""The analytics runner: the engine applied to the tracks the cloud ingests, events stored.

A background task of the cloud (:meth:`AnalyticsRunner.run`, started by ``cloud/app.py``)
makes a *pass* every ``period_s``; each pass goes over every camera with a scene:

- **Watermark**: the change feed is ``tracks.updated_us``, stamped by the ingest writer
  whenever it inserts or changes a track or gives it a sighting (:mod:`cloud.project`; it is
  the writer's clock, so a backlog of old capture times from an edge that was offline is seen
  like live data). Per camera, ``analytics_progress.watermark_us`` is the newest change
  analysed; a pass reads the tracks changed since ``watermark - lookback_s`` in
  ``(updated_us, id)`` order, in batches. The lookback covers ingest transactions that commit
  out of their start order (several writers on PostgreSQL) and clock steps; a track seen
  again with the same ``updated_us`` is skipped (kept in memory). A camera's analytics begin
  when it gets its first scene: tracks that changed before are never analysed (neither the
  lookback nor a reprocessing reaches back past that moment).
- **Growing tracks**: a track still in progress is analysed again each time it changes, from
  all its samples (:mod:`cloud.analytics.samples`); the engine reports the same settled events
  with the same keys, so storing is an upsert by key (:mod:`cloud.analytics.store`): new
  events are inserted once, the speed row is updated (and, once the track has ended,
  replaced by its settled speed), events already stored stay. A track
  whose history changed (late boxes inside its span) has its stored events brought in line
  with its latest analysis. A long track in progress (``long_track_samples``: a vehicle
  parked for minutes) is analysed again at most every ``long_track_every_s`` (the watermark
  waits for it), at once when it ends.
- **Scene changes**: a new scene applies from the next pass on. Events already stored keep
  their ``scene_version``. A track keeps the scene it was first analysed with once it has
  events: a track that spans the change goes on with its old scene (its version is looked up
  in the scene history) until it ends, so one track's crossings are never numbered under two
  different geometries. Tracks without events yet take the new scene.
- **Faults**: events and the watermark are written in one transaction per batch, after the
  analysis (a read, then a write: no SQLite snapshot is held across the write). A pass that
  fails (database down) is logged and retried at the next one; a crash or restart loses at
  most the in-memory skip list, so the lookback window is analysed again, which stores
  nothing twice. A track the engine cannot analyse is logged, counted and skipped until it
  changes; a stored scene that no longer validates stops that camera's analytics (logged).
- **Congestion**: in the same transaction as a batch's events, the congestion windows its
  tracks' zone stays touch (before and after the change) are computed again for the zones of
  the camera's current scene, and those the newest capture time closes are made final, with
  their change events (:mod:`cloud.analytics.congestion_store`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.engine import Engine

from cloud.analytics.config import AnalyticsConfig
from cloud.analytics.congestion_store import LEVEL_VALUES, refresh
from cloud.analytics.congestion_windows import WindowSpec, touched
from cloud.analytics.engine import CompiledScene, analyze_track, compile_scene
from cloud.analytics.metrics import AnalyticsMetrics, class_label
from cloud.analytics.samples import (
    ChangedTrack,
    changed_tracks,
    detection_samples,
    track_samples,
)
from cloud.analytics.scenes import (
    InvalidScene,
    StoredScene,
    current_scenes,
    first_scene_us,
    scene_version,
)
from cloud.analytics.store import (
    Key,
    Plan,
    StoredEvent,
    apply,
    event_row,
    plan,
    save_watermark,
    settle,
    stored_events,
    watermarks,
)
from cloud.schema import cameras

logger = logging.getLogger(__name__)

INCIDENTS: Final = frozenset({"stopped_vehicle", "wrong_way"})


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class PassStats:
    """What one pass did."""

    cameras: int = 0
    analysed: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    windows: int = 0
    """Congestion window rows written or deleted."""
    congestion_changes: int = 0
    """Congestion-change events inserted."""


class AnalyticsRunner:
    """Runs passes (:meth:`run_once`) in a worker thread while :meth:`run` runs."""

    def __init__(
        self,
        engine: Engine,
        config: AnalyticsConfig,
        metrics: AnalyticsMetrics,
        clock_us: Callable[[], int] = _now_us,
    ) -> None:
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self.clock_us = clock_us
        self._seen: dict[int, dict[int, int]] = {}  # camera -> track id -> updated_us analysed
        self._compiled: dict[tuple[int, str], CompiledScene | None] = {}
        self._labels: dict[int, str] = {}
        self._starts: dict[int, int] = {}  # camera -> when it got its first scene
        self._long: dict[int, int] = {}  # long tracks in progress -> when last analysed
        self._gauged: dict[int, set[str]] = {}  # camera -> zones with a congestion gauge
        self._windows = WindowSpec(
            config.congestion_window_s * 1_000_000, round(config.congestion_max_stay_s * 1e6)
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # ---------------------------------------------------------------- service

    async def run(self) -> None:
        """A pass every ``period_s`` until cancelled; a failed pass is logged and retried."""
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                self.metrics.errors.labels("pass").inc()
                logger.exception("analytics pass failed; next in %.1f s", self.config.period_s)
            await asyncio.sleep(self.config.period_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the current batch; waits for a pass in progress (blocking)."""
        self._stop.set()
        if self._lock.acquire(timeout=timeout_s):
            self._lock.release()

    def reprocess(self, camera_id: int, since_us: int = 0) -> None:
        """Analyse again every track of the camera changed since ``since_us`` (next pass)."""
        with self._lock, self.engine.begin() as conn:
            save_watermark(conn, camera_id, since_us, self.clock_us())
            self._seen.pop(camera_id, None)

    # ---------------------------------------------------------------- passes

    def run_once(self) -> PassStats:
        """One pass over every camera with a scene (blocking)."""
        stats = PassStats()
        with self._lock:
            started = time.perf_counter()
            with self.engine.connect() as conn:
                scenes = current_scenes(conn)
                marks = watermarks(conn)
                missing = sorted(set(scenes) - set(self._labels))
                if missing:
                    found = conn.execute(
                        select(cameras.c.id, cameras.c.edge_id, cameras.c.name).where(
                            cameras.c.id.in_(missing)
                        )
                    )
                    self._labels.update({int(i): f"{e}/{n}" for i, e, n in found})
            for camera_id, stored in scenes.items():
                if self._stop.is_set():
                    break
                self._camera(camera_id, stored, marks.get(camera_id), stats)
                stats.cameras += 1
            if scenes:
                self.metrics.pass_seconds.observe(time.perf_counter() - started)
        return stats

    def _compile(self, stored: StoredScene) -> CompiledScene | None:
        key = (stored.camera_id, stored.version)
        if key not in self._compiled:
            try:
                self._compiled[key] = compile_scene(stored.scene())
            except InvalidScene as exc:
                self.metrics.errors.labels("scene").inc()
                logger.error(
                    "camera %d: stored scene %s does not validate, no analytics: %s",
                    stored.camera_id, stored.version, exc,
                )  # fmt: skip
                self._compiled[key] = None
        return self._compiled[key]

    def _camera(
        self, camera_id: int, stored: StoredScene, mark: int | None, stats: PassStats
    ) -> None:
        current = self._compile(stored)
        if current is None:
            return
        lookback = round(self.config.lookback_s * 1e6)
        if camera_id not in self._starts:
            with self.engine.connect() as conn:
                began = first_scene_us(conn, camera_id)
            self._starts[camera_id] = stored.created_us if began is None else began
        start = self._starts[camera_id]  # nothing changed before the first scene is analysed
        mark = start if mark is None else mark
        # every track changed at or after mark - lookback (and the first scene)
        position = (max(mark - lookback, start), 0)
        seen = self._seen.setdefault(camera_id, {})
        newest, saved, analysed = mark, mark, 0
        held: int | None = None  # the oldest change of a long track left for a later pass
        while analysed < self.config.max_tracks_per_pass and not self._stop.is_set():
            with self.engine.connect() as conn:
                rows = changed_tracks(conn, camera_id, position, self.config.batch_tracks)
            if not rows:
                break
            position = rows[-1].position
            fresh = [r for r in rows if seen.get(r.id) != r.updated_us]
            flags = [(r, self._later(r)) for r in fresh]
            later = [r.updated_us for r, wait in flags if wait]
            todo = [r for r, wait in flags if not wait]
            held = min([*later, *([held] if held is not None else [])], default=None)
            newest = max(newest, rows[-1].updated_us)
            watermark = newest if held is None else min(newest, held)
            if todo or watermark != saved:
                self._batch(camera_id, current, todo, watermark, stats)
                saved = watermark
            for r in todo:
                seen[r.id] = r.updated_us
            analysed += len(todo)
            if len(rows) < self.config.batch_tracks:
                break
        for track_id in [t for t, u in seen.items() if u < saved - lookback]:
            del seen[track_id]
        label = self._labels.get(camera_id, str(camera_id))
        self.metrics.lag.labels(label).set(max(0.0, (self.clock_us() - newest) / 1e6))

    def _later(self, row: ChangedTrack) -> bool:
        """Whether a long track in progress was analysed too recently to be again now."""
        if row.ended:
            return False
        last = self._long.get(row.id)
        every = self.config.long_track_every_s * 1e6
        return last is not None and self.clock_us() - last < every

    def _remember_length(self, row: ChangedTrack, samples: int, now: int) -> None:
        if not row.ended and samples >= self.config.long_track_samples:
            self._long[row.id] = now
        else:
            self._long.pop(row.id, None)
        if len(self._long) > 10_000:  # tracks that never ended: forget the oldest
            for track_id, _ in sorted(self._long.items(), key=lambda kv: kv[1])[:5_000]:
                del self._long[track_id]

    def _gauge(self, camera_id: int, label: str, latest: dict[str, str]) -> None:
        """Set each zone's congestion gauge; zones gone from the scene lose theirs."""
        if not latest:
            return
        for zone in self._gauged.get(camera_id, set()) - set(latest):
            self.metrics.congestion.remove(label, zone)
        for zone, level in latest.items():
            self.metrics.congestion.labels(label, zone).set(LEVEL_VALUES[level])
        self._gauged[camera_id] = set(latest)

    def _scene_for(
        self, camera_id: int, current: CompiledScene, mine: dict[Key, StoredEvent]
    ) -> CompiledScene | None:
        """The scene a track is analysed with: the one its stored events name, else the
        camera's current one (module docstring: scene changes)."""
        if not mine:
            return current
        first = min(mine.values(), key=lambda s: s.id)
        version = first.row.scene_version
        if version == current.version:
            return current
        key = (camera_id, version)
        if key not in self._compiled:
            with self.engine.connect() as conn:
                old = scene_version(conn, camera_id, version)
            if old is None:
                logger.error("camera %d: scene %s of stored events is not in the history",
                             camera_id, version)  # fmt: skip
                return None
            return self._compile(old)
        return self._compiled[key]

    def _batch(
        self,
        camera_id: int,
        current: CompiledScene,
        rows: list[ChangedTrack],
        watermark_us: int,
        stats: PassStats,
    ) -> None:
        """Analyse ``rows`` and store their events and the watermark in one transaction."""
        ids = [r.id for r in rows]
        boxes, stored = {}, {}
        if ids:
            with self.engine.connect() as conn:
                boxes = detection_samples(conn, ids)
                stored = stored_events(conn, ids)
        now = self.clock_us()
        todo = Plan()
        label = self._labels.get(camera_id, str(camera_id))
        windows: dict[str, set[int]] = {}  # zone -> congestion windows touched
        newest = 0  # the newest capture time seen
        for row in rows:
            mine = stored.get(row.id, {})
            compiled = self._scene_for(camera_id, current, mine)
            if compiled is None:
                continue
            track = track_samples(row, boxes.get(row.id, []))
            try:
                events = analyze_track(compiled, track)
            except Exception:
                self.metrics.errors.labels("track").inc()
                logger.exception("camera %d: track %d cannot be analysed", camera_id, row.id)
                continue
            span = (track.samples[0][0], track.samples[-1][0]) if track.samples else None
            fresh = settle([event_row(e) for e in events], row.ended)
            plan(todo, camera_id, row.id, row.class_id, fresh, mine, span, now)
            last = max(row.last_seen_us, span[1] if span else 0)
            newest = max(newest, last)
            for group in ([s.row for s in mine.values()], fresh):
                for zone, starts in touched(group, last, self._windows).items():
                    windows.setdefault(zone, set()).update(starts)
            self._remember_length(row, len(track.samples), now)
            self.metrics.tracks.labels(label).inc()
            stats.analysed += 1
        with self.engine.begin() as conn:
            inserted = apply(conn, todo)
            save_watermark(conn, camera_id, watermark_us, now)
            congestion = None
            if newest and current.zones:
                congestion = refresh(conn, camera_id, current, windows, newest, self._windows, now)
        if congestion is not None:
            stats.windows += congestion.windows
            stats.congestion_changes += len(congestion.changes)
            self._gauge(camera_id, label, congestion.latest)
        stats.inserted += len(inserted)
        stats.updated += len(todo.updates)
        stats.deleted += len(todo.deletes)
        for r in inserted:
            if r.kind == "line_crossing":
                cls = class_label(r.class_id)
                self.metrics.crossings.labels(label, r.subject, r.direction, cls).inc()
            elif r.kind == "zone_entry":
                self.metrics.zone_entries.labels(label, r.subject, class_label(r.class_id)).inc()
            elif r.kind in INCIDENTS:
                self.metrics.incidents.labels(label, r.kind).inc()
