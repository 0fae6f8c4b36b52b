"""Ingest: runs one :class:`~cloud.session.EdgeSession` per connection, whatever the transport.

A connection hands every received message to :meth:`LiveSession.handle` and sends back the
replies. Messages of one connection are handled strictly in order; the journal commit runs
in a worker thread so the event loop keeps serving every other edge meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from cloud.journal import Journal
from cloud.metrics import CloudMetrics
from cloud.session import EdgeSession
from shared.vectors import CodecSet

logger = logging.getLogger(__name__)


class LiveSession:
    def __init__(self, session: EdgeSession, metrics: CloudMetrics) -> None:
        self.session = session
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
            stats = self.session.stats
            before = (stats.received, stats.stored, stats.duplicates, stats.rejected.copy())
            replies = await asyncio.to_thread(self.session.receive, data)
            self.metrics.received.inc(stats.received - before[0])
            self.metrics.stored.inc(stats.stored - before[1])
            self.metrics.duplicates.inc(stats.duplicates - before[2])
            for code, n in (stats.rejected - before[3]).items():
                self.metrics.errors.labels(code).inc(n)
            return replies


class Ingest:
    def __init__(self, journal: Journal, codecs: CodecSet, metrics: CloudMetrics) -> None:
        self.journal = journal
        self.codecs = codecs
        self.metrics = metrics

    def open(self, edge_id: str) -> LiveSession:
        session_id = secrets.token_hex(8)
        return LiveSession(
            EdgeSession(edge_id, session_id, self.journal, self.codecs), self.metrics
        )
