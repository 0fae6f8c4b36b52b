"""The live feed: new tracks pushed to browsers as Server-Sent Events.

One poller per process looks for tracks stored after the last one it saw (an indexed
``id >`` query every ``poll_s``) while at least one browser listens, and hands each new track
to every listener's queue. Polling the catalog, rather than hooking the writer, means a
replica also shows tracks another replica stored. A track whose crop (a detection with an
embedding) has not arrived yet is watched for ``crop_wait_s`` and sent again once it has one.

Each event is ``event: track`` with JSON data: id, camera, edge, class, first_seen_us,
detection_id (or null) and ``stored_us``, the server's time when it saw the track (what the
dashboard benchmark compares with the commit time). A browser that reconnects sends
``Last-Event-ID`` and gets what it missed (up to one batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from sqlalchemy.engine import Engine

from cloud.dashboard.queries import (
    MAX_LIVE_BATCH,
    TrackRow,
    last_track_id,
    tracks_after,
    tracks_by_ids,
)
from cloud.dashboard.web import class_name

logger = logging.getLogger(__name__)

KEEPALIVE_S: Final = 15.0
MAX_QUEUE: Final = 1000
LOOKBACK_IDS: Final = 64
"""Each poll also re-reads this many ids below the newest seen: on PostgreSQL with several
writers (replicas), a track can commit after one with a higher id; it is still sent."""


def track_event(row: TrackRow, stored_us: int) -> dict[str, Any]:
    return {
        "id": row.id,
        "camera": row.camera,
        "camera_id": row.camera_id,
        "edge": row.edge_id,
        "class_id": row.class_id,
        "class": class_name(row.class_id),
        "first_seen_us": row.first_seen_us,
        "detection_id": row.detection_id,
        "stored_us": stored_us,
    }


class LiveFeed:
    def __init__(self, engine: Engine, poll_s: float = 0.25, crop_wait_s: float = 30.0) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self.crop_wait_us = int(crop_wait_s * 1e6)
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_id: int | None = None
        self._published: dict[int, None] = {}  # ids sent recently (ordered, bounded)
        self._floor: int | None = None  # ids at or below it are not sent by the poller
        self._waiting: dict[int, int] = {}  # track id -> give up at (µs)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def _poll_once(self) -> None:
        if self._last_id is None:
            self._last_id = await asyncio.to_thread(last_track_id, self.engine)
        if self._floor is None:
            self._floor = self._last_id  # what the listeners' pages already show
        rows = await asyncio.to_thread(
            tracks_after,
            self.engine,
            max(self._floor, self._last_id - LOOKBACK_IDS),
            LOOKBACK_IDS + MAX_LIVE_BATCH,
        )
        now = time.time_ns() // 1000
        if self._waiting:
            again = await asyncio.to_thread(tracks_by_ids, self.engine, list(self._waiting))
            for row in again:
                if row.detection_id is not None:
                    self._waiting.pop(row.id, None)
                    self._publish(track_event(row, now))
            self._waiting = {k: v for k, v in self._waiting.items() if v > now}
        for row in rows:
            if row.id in self._published:
                continue
            self._last_id = max(self._last_id, row.id)
            self._published[row.id] = None
            if len(self._published) > 4 * LOOKBACK_IDS:
                for old in list(self._published)[: 2 * LOOKBACK_IDS]:
                    del self._published[old]
            if row.detection_id is None:
                self._waiting[row.id] = now + self.crop_wait_us
            self._publish(track_event(row, now))

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._listeners):
            if queue.qsize() < MAX_QUEUE:
                queue.put_nowait(event)

    async def _run(self) -> None:
        while self._listeners:
            try:
                await self._poll_once()
            except Exception:
                logger.exception("live feed: reading new tracks failed; retrying")
                await asyncio.sleep(max(self.poll_s, 1.0))
            await asyncio.sleep(self.poll_s)
        self._task = None
        self._last_id = self._floor = None  # the next listener starts from its page
        self._published.clear()

    def _ensure_running(self, after_id: int | None) -> None:
        if self._task is None or self._task.done():
            self._last_id = after_id  # None: from the newest track, read at the first poll
            self._floor = None
            self._published.clear()
            self._task = asyncio.create_task(self._run(), name="dashboard-live")

    async def stream(self, after_id: int | None) -> AsyncIterator[bytes]:
        """Server-Sent Events for one browser, until it goes away."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # Listen first, then read what was missed since the page was drawn: a track stored
        # in between is in one or the other (or both: sent once, below).
        self._listeners.add(queue)
        self._ensure_running(after_id)
        if after_id is not None:
            missed = await asyncio.to_thread(tracks_after, self.engine, after_id)
            now = time.time_ns() // 1000
            for row in missed:
                queue.put_nowait(track_event(row, now))
        sent: dict[int, bool] = {}  # track id -> sent with its crop
        try:
            yield b"retry: 2000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                had_crop = sent.get(event["id"])
                if had_crop is not None and (had_crop or event["detection_id"] is None):
                    continue
                if len(sent) > 10 * MAX_QUEUE:
                    sent.clear()
                sent[event["id"]] = event["detection_id"] is not None
                data = json.dumps(event, separators=(",", ":"))
                yield f"id: {event['id']}\nevent: track\ndata: {data}\n\n".encode()
        finally:
            self._listeners.discard(queue)

    async def close(self) -> None:
        self._listeners.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
