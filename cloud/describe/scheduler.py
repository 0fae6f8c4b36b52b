"""When to describe: closed time windows per camera, and notable events.

Windows are ``window_s`` long and aligned to multiples of it since the Unix epoch. A window
with detections is enqueued once it is *closed*: the camera's newest capture time has passed
its end by ``settle_s`` (late boxes had time to arrive), or the wall clock has passed it by
``idle_close_s`` (a camera that went silent). Notable events enqueue a description of the
``window_s`` before them at once: a class the camera has not shown before (the first car, the
first person), and a stopped vehicle (a vehicle track standing still for ``stopped_after_s``,
see :mod:`cloud.describe.motion`).

Each tick reads only detections added since the previous tick (ids above the last one seen),
so its cost follows the ingest rate, not the catalog's size. On start, windows of the last
``backfill_s`` are considered again and the classes each camera has shown are read; job keys
(``window:<camera>:<start>``, ``class:<camera>:<class>``, ``stopped:<track>``) make every
enqueue idempotent, across restarts and replicas. Blocking: run :meth:`Scheduler.tick` in a
worker thread.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from cloud.describe.config import DescriberConfig
from cloud.describe.jobs import JobQueue
from cloud.describe.metrics import DescriberMetrics
from cloud.describe.motion import DEFAULT_ASPECT, Observation, still_for_s
from cloud.describe.schema import VEHICLES, class_name
from cloud.schema import cameras, detections

logger = logging.getLogger(__name__)

MAX_FIRED: Final = 100_000
"""Event keys remembered in memory (beyond, the jobs table's unique key still dedupes)."""


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        queue: JobQueue,
        config: DescriberConfig,
        metrics: DescriberMetrics,
        clock_us: Callable[[], int],
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.config = config
        self.metrics = metrics
        self.clock_us = clock_us
        self.window_us = max(1, int(config.window_s * 1e6))
        self._last_id: int | None = None  # highest detection id read
        self._newest: dict[int, int] = {}  # camera -> newest capture time (us)
        self._pending: set[tuple[int, int]] = set()  # (camera, window start) with data
        self._classes: dict[int, set[int]] = defaultdict(set)
        self._aspect: dict[int, float] = {}
        self._fired: set[str] = set()
        self._enqueued = 0  # jobs enqueued by this scheduler

    def tick(self, final: bool = False) -> int:
        """Enqueue what is due; ``final`` closes every window with data (shutdown, demo).

        Returns the number of jobs enqueued.
        """
        before = self._enqueued
        with self.engine.connect() as conn:
            if self._last_id is None:
                self._start(conn)
                new_tracks: list[int] = []
            else:
                new_tracks = self._read_new(conn)
            observations = self._track_boxes(conn, new_tracks)
        self._enqueue_stopped(observations)
        self._enqueue_closed(final)
        return self._enqueued - before

    # ---------------------------------------------------------------- reading

    def _start(self, conn: Connection) -> None:
        for cam_id in conn.execute(select(cameras.c.id)).scalars():
            newest = conn.execute(
                select(func.max(detections.c.ts_us)).where(detections.c.camera_id == cam_id)
            ).scalar()
            if newest is None:
                continue
            cam = int(cam_id)
            self._newest[cam] = int(newest)
            since = int(newest) - int(self.config.backfill_s * 1e6)
            bucket = detections.c.ts_us // self.window_us
            for (b,) in conn.execute(
                select(bucket)
                .distinct()
                .where(detections.c.camera_id == cam, detections.c.ts_us >= since)
            ):
                self._pending.add((cam, int(b) * self.window_us))
            if self.config.events:
                self._classes[cam] = set(
                    conn.execute(
                        select(detections.c.class_id)
                        .distinct()
                        .where(detections.c.camera_id == cam)
                    ).scalars()
                )
        self._last_id = int(conn.execute(select(func.max(detections.c.id))).scalar() or 0)
        logger.info(
            "describer scheduler: %d camera(s) with data, %d window(s) to consider",
            len(self._newest),
            len(self._pending),
        )

    def _read_new(self, conn: Connection) -> list[int]:
        """Fold detections with ids above the last read into the state; returns the
        vehicle tracks that got new boxes."""
        assert self._last_id is not None
        bucket = (detections.c.ts_us // self.window_us).label("bucket")
        rows = conn.execute(
            select(
                detections.c.camera_id,
                bucket,
                detections.c.class_id,
                func.min(detections.c.ts_us),
                func.max(detections.c.ts_us),
                func.max(detections.c.id),
            )
            .where(detections.c.id > self._last_id)
            .group_by(detections.c.camera_id, bucket, detections.c.class_id)
        ).all()
        if not rows:
            return []
        new_tracks = []
        if self.config.events:
            new_tracks = [
                int(t)
                for t in conn.execute(
                    select(detections.c.track_id)
                    .distinct()
                    .where(
                        detections.c.id > self._last_id,
                        detections.c.track_id.is_not(None),
                        detections.c.class_id.in_(sorted(VEHICLES)),
                    )
                ).scalars()
            ]
        first_of_class: dict[tuple[int, int], int] = {}
        for cam_id, b, class_id, first_ts, last_ts, max_id in rows:
            cam = int(cam_id)
            self._pending.add((cam, int(b) * self.window_us))
            self._newest[cam] = max(self._newest.get(cam, 0), int(last_ts))
            self._last_id = max(self._last_id, int(max_id))
            if self.config.events and int(class_id) not in self._classes[cam]:
                key = (cam, int(class_id))
                first_of_class[key] = min(first_of_class.get(key, int(first_ts)), int(first_ts))
        for (cam, class_id), ts in sorted(first_of_class.items()):
            self._classes[cam].add(class_id)
            name = class_name(class_id)
            self._event(f"class:{cam}:{class_id}", cam, ts, f"first {name} seen by this camera")
        return new_tracks

    def _track_boxes(self, conn: Connection, track_ids: list[int]) -> dict[int, Any]:
        """Recent boxes of the given tracks: {track: (camera, class, [Observation])}."""
        if not track_ids:
            return {}
        lookback = int((self.config.stopped_after_s + self.config.window_s) * 1e6)
        floor = min(self._newest.values(), default=0) - lookback
        out: dict[int, Any] = {}
        for start in range(0, len(track_ids), 500):
            chunk = track_ids[start : start + 500]
            rows = conn.execute(
                select(
                    detections.c.track_id,
                    detections.c.camera_id,
                    detections.c.class_id,
                    detections.c.ts_us,
                    detections.c.x1,
                    detections.c.y1,
                    detections.c.x2,
                    detections.c.y2,
                )
                .where(detections.c.track_id.in_(chunk), detections.c.ts_us >= floor)
                .order_by(detections.c.track_id, detections.c.ts_us)
            ).all()
            for r in rows:
                cam = int(r.camera_id)
                if int(r.ts_us) < self._newest.get(cam, 0) - lookback:
                    continue
                entry = out.setdefault(int(r.track_id), (cam, int(r.class_id), []))
                entry[2].append(Observation(int(r.ts_us), (r.x1, r.y1, r.x2, r.y2)))
        for cam in {e[0] for e in out.values()} - self._aspect.keys():
            size = conn.execute(
                select(cameras.c.width, cameras.c.height).where(cameras.c.id == cam)
            ).first()
            known = size is not None and bool(size.width) and bool(size.height)
            self._aspect[cam] = size.height / size.width if size and known else DEFAULT_ASPECT
        return out

    # ---------------------------------------------------------------- enqueueing

    def _enqueue_stopped(self, observations: dict[int, Any]) -> None:
        for track, (cam, class_id, obs) in sorted(observations.items()):
            still = still_for_s(obs, self.config.stopped_max_move, self._aspect[cam])
            if still >= self.config.stopped_after_s:
                why = f"stopped vehicle: {class_name(class_id)} (track {track}) still {still:.0f} s"
                self._event(f"stopped:{track}", cam, obs[-1].ts_us, why)

    def _event(self, key: str, camera: int, ts_us: int, reason: str) -> None:
        if key in self._fired:
            return
        if len(self._fired) >= MAX_FIRED:
            self._fired.clear()
        self._fired.add(key)
        payload = {
            "camera_id": camera,
            "from_us": ts_us - self.window_us,
            "to_us": ts_us + 1,
            "reason": reason,
        }
        if self.queue.enqueue(key, payload) is None:
            return
        self._enqueued += 1
        self.metrics.enqueued.labels(key.split(":", 1)[0]).inc()
        logger.info("describer: event on camera %d: %s", camera, reason)

    def _enqueue_closed(self, final: bool) -> None:
        now = self.clock_us()
        settle = int(self.config.settle_s * 1e6)
        idle = int(self.config.idle_close_s * 1e6)
        for cam, start in sorted(self._pending):
            end = start + self.window_us
            newest = self._newest.get(cam, 0)
            if not (final or newest >= end + settle or now >= end + idle):
                continue
            self._pending.discard((cam, start))
            payload = {"camera_id": cam, "from_us": start, "to_us": end, "reason": "window"}
            if self.queue.enqueue(f"window:{cam}:{start}", payload) is not None:
                self.metrics.enqueued.labels("window").inc()
                self._enqueued += 1
