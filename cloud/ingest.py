"""Ingest: runs one :class:`~cloud.session.EdgeSession` per connection, whatever the transport.

A connection hands every received message to :meth:`LiveSession.handle` and sends back the
replies. Messages of one connection are handled strictly in order: decoding runs in a worker
thread, storing in the group-committing :class:`~cloud.writer.Writer`, so the event loop keeps
serving every other edge meanwhile. When storing fails, nothing is acknowledged and the
session is closed: the edge reconnects and sends the same frames again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from cloud.metrics import CloudMetrics
from cloud.session import EdgeSession
from cloud.store import Store
from cloud.writer import Writer
from shared.messages import ErrorCode

logger = logging.getLogger(__name__)


class LiveSession:
    def __init__(self, session: EdgeSession, writer: Writer, metrics: CloudMetrics) -> None:
        self.session = session
        self.writer = writer
        self.metrics = metrics
        self._lock = asyncio.Lock()

    @property
    def edge_id(self) -> str:
        return self.session.edge_id

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def closed(self) -> bool:
        return self.session.closed

    async def handle(self, data: bytes) -> list[bytes]:
        async with self._lock:
            edge = self.edge_id
            stats = self.session.stats
            before = (stats.received, stats.stored, stats.duplicates, stats.rejected.copy())
            replies, request = await asyncio.to_thread(self.session.parse, data)
            if request is not None:
                try:
                    result = await self.writer.submit(request)
                except Exception as exc:
                    logger.error("edge %s: storing failed, not acknowledged: %s", edge, exc)
                    replies.append(
                        self.session.refuse(ErrorCode.INTERNAL, "storage failed; send again")
                    )
                else:
                    replies += self.session.finish(request, result)
                    newest = max(f.capture_ts_us for f in request.frames)
                    self.metrics.lag.labels(edge).set(max(0.0, time.time() - newest / 1e6))
            self.metrics.received.labels(edge).inc(stats.received - before[0])
            self.metrics.received_bytes.labels(edge).inc(len(data))
            self.metrics.stored.labels(edge).inc(stats.stored - before[1])
            self.metrics.duplicates.labels(edge).inc(stats.duplicates - before[2])
            self.metrics.backlog.labels(edge).set(self.session.edge_backlog)
            for code, n in (stats.rejected - before[3]).items():
                self.metrics.errors.labels(code).inc(n)
            return replies


class Ingest:
    def __init__(self, store: Store, writer: Writer, metrics: CloudMetrics) -> None:
        self.store = store
        self.writer = writer
        self.metrics = metrics

    def open(self, edge_id: str) -> LiveSession:
        session_id = secrets.token_hex(8)
        return LiveSession(EdgeSession(edge_id, session_id, self.store), self.writer, self.metrics)
