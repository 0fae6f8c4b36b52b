"""Retention: delete what is older than the configured age, from the catalog and the index.

Runs in chunks (short write transactions, so ingest keeps committing in between). Deleted, by
capture time: detections with their embeddings, frame counts, tracks last seen before the
cut-off, descriptions whose window ended before it, analytics events (crossings, zone stays,
speeds, incidents, congestion changes) that happened before it, congestion windows that ended
before it, and journal frames. The journal's
watermarks stay, so a frame resent after its deletion is still recognised as a repeat; frames
older than the cut-off that arrive late are acknowledged but not added to the catalog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy import Connection, delete, select
from sqlalchemy.engine import Engine

from cloud.metrics import CloudMetrics
from cloud.schema import (
    analytics_events,
    congestion_windows,
    descriptions,
    detections,
    embeddings,
    frame_counts,
    journal_frames,
    tracks,
)

logger = logging.getLogger(__name__)

CHUNK = 10_000


class Retention:
    def __init__(
        self,
        engine: Engine,
        max_age_s: float,
        metrics: CloudMetrics,
        on_cutoff: Callable[[int], int] = lambda _ts: 0,
    ) -> None:
        """``on_cutoff(ts_us)`` removes the same window from the index; returns its count."""
        self.engine = engine
        self.max_age_s = max_age_s
        self.metrics = metrics
        self.on_cutoff = on_cutoff

    @property
    def period_s(self) -> float:
        """How often retention runs: a hundredth of the age, between 10 s and an hour."""
        return min(3600.0, max(10.0, self.max_age_s / 100))

    async def run(self) -> None:
        """:meth:`run_once` every :attr:`period_s` until cancelled (on one replica: it is led,
        see :mod:`cloud.leases`)."""
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                logger.exception("retention run failed; retrying in %.0f s", self.period_s)
            await asyncio.sleep(self.period_s)

    async def follow(self, leads: Callable[[], bool]) -> None:
        """On every replica while another leads retention: cut this replica's own index and
        ingest horizon at the same age (``on_cutoff``); the leader's :meth:`run_once` deletes
        the rows and cuts its own."""
        while True:
            if not leads():
                try:
                    await asyncio.to_thread(self.on_cutoff, self.cutoff_us())
                except Exception:
                    logger.exception("trimming the index to the retention age failed")
            await asyncio.sleep(self.period_s)

    def cutoff_us(self, now_s: float | None = None) -> int:
        return int(((time.time() if now_s is None else now_s) - self.max_age_s) * 1e6)

    def run_once(self, now_s: float | None = None) -> dict[str, int]:
        """Delete everything older than the age; returns rows removed per table."""
        cut = self.cutoff_us(now_s)
        removed = {
            "embeddings": self._chunks(
                lambda conn: _ids(
                    conn,
                    select(embeddings.c.detection_id).where(
                        embeddings.c.detection_id.in_(
                            select(detections.c.id).where(detections.c.ts_us < cut)
                        )
                    ),
                ),
                lambda conn, ids: (
                    conn.execute(
                        delete(embeddings).where(embeddings.c.detection_id.in_(ids))
                    ).rowcount
                ),
            ),
            "detections": self._chunks(
                lambda conn: _ids(conn, select(detections.c.id).where(detections.c.ts_us < cut)),
                lambda conn, ids: (
                    conn.execute(delete(detections).where(detections.c.id.in_(ids))).rowcount
                ),
            ),
            "frame_counts": self._chunks(
                lambda conn: _ids(
                    conn, select(frame_counts.c.id).where(frame_counts.c.ts_us < cut)
                ),
                lambda conn, ids: (
                    conn.execute(delete(frame_counts).where(frame_counts.c.id.in_(ids))).rowcount
                ),
            ),
            "tracks": self._chunks(
                lambda conn: _ids(
                    conn,
                    select(tracks.c.id).where(
                        tracks.c.last_seen_us < cut,
                        ~tracks.c.id.in_(
                            select(detections.c.track_id).where(detections.c.track_id.is_not(None))
                        ),
                    ),
                ),
                lambda conn, ids: conn.execute(delete(tracks).where(tracks.c.id.in_(ids))).rowcount,
            ),
            "descriptions": self._chunks(
                lambda conn: _ids(
                    conn, select(descriptions.c.id).where(descriptions.c.to_us < cut)
                ),
                lambda conn, ids: (
                    conn.execute(delete(descriptions).where(descriptions.c.id.in_(ids))).rowcount
                ),
            ),
            "analytics_events": self._chunks(
                lambda conn: _ids(
                    conn, select(analytics_events.c.id).where(analytics_events.c.at_us < cut)
                ),
                lambda conn, ids: (
                    conn.execute(
                        delete(analytics_events).where(analytics_events.c.id.in_(ids))
                    ).rowcount
                ),
            ),
            "congestion_windows": self._chunks(
                lambda conn: _ids(
                    conn,
                    select(congestion_windows.c.id).where(
                        congestion_windows.c.start_us < cut,
                        congestion_windows.c.start_us + congestion_windows.c.window_us <= cut,
                    ),
                ),
                lambda conn, ids: (
                    conn.execute(
                        delete(congestion_windows).where(congestion_windows.c.id.in_(ids))
                    ).rowcount
                ),
            ),
        }
        with self.engine.begin() as conn:
            removed["journal_frames"] = conn.execute(
                delete(journal_frames).where(journal_frames.c.capture_ts_us < cut)
            ).rowcount
        removed["index"] = self.on_cutoff(cut)
        for table, n in removed.items():
            if n:
                self.metrics.retention_deleted.labels(table).inc(n)
        if any(removed.values()):
            logger.info("retention (older than %.0f s): removed %s", self.max_age_s, removed)
        return removed

    def _chunks(
        self,
        pick: Callable[[Connection], list[int]],
        remove: Callable[[Connection, list[int]], int],
    ) -> int:
        total = 0
        while True:
            with self.engine.begin() as conn:
                ids = pick(conn)
                removed = remove(conn, ids) if ids else 0
            if not removed:  # nothing (more) to delete; never spin on rows that stay
                return total
            total += removed


def _ids(conn: Connection, query: object) -> list[int]:
    return [int(i) for i in conn.execute(query.limit(CHUNK)).scalars()]  # type: ignore[attr-defined]
