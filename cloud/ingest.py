"""Ingest: runs one :class:`~cloud.session.EdgeSession` per connection, whatever the transport.

A connection is served by :func:`pipelined`: every received message goes to
:meth:`LiveSession.begin` and the replies go back in order. Messages of one connection are
decoded strictly in order in a worker thread and stored in that order by the group-committing
:class:`~cloud.writer.Writer`; a few are in flight at once, so decoding the next message
overlaps committing this one, and the event loop keeps serving every other edge meanwhile.
A frame that cannot be stored (a value the database refuses) is refused alone, with a typed
``Error`` naming its seq, and the others are stored and acknowledged: no frame can poison a
session. Only when the database itself is unavailable is nothing acknowledged and the session
closed: the edge reconnects and sends the same frames again.

Each connection is reported to the :class:`~cloud.linkmon.LinkMonitor` (opened when
:func:`pipelined` starts serving it, closed when it stops, whatever the reason), and so is
what its session receives (see :mod:`cloud.session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Final

from cloud.codebook_push import PushStats
from cloud.codebooks import CodebookLibrary
from cloud.linkmon import LinkMonitor
from cloud.metrics import CloudMetrics
from cloud.session import EdgeSession
from cloud.store import Store, WriteRequest, WriteResult
from cloud.writer import Writer
from shared.messages import ErrorCode

logger = logging.getLogger(__name__)

# Messages of one connection in flight at once (decoded, waiting for their commit).
PIPELINE_DEPTH: Final = 4


class LiveSession:
    def __init__(
        self, session: EdgeSession, writer: Writer, metrics: CloudMetrics, transport: str = ""
    ) -> None:
        self.session = session
        self.writer = writer
        self.metrics = metrics
        self.transport = transport  # "webrtc", "websocket" ("": not told)
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
        """Decode, store and acknowledge one message; returns the replies to send."""
        return await (await self.begin(data))

    async def begin(self, data: bytes) -> Awaitable[list[bytes]]:
        """Decode ``data`` and queue it for storing; await the result for the replies.

        Messages of one session begin strictly in order; the next one may begin (and be
        decoded) while this one is being committed. Replies come only after the commit.
        """
        async with self._lock:
            stats = self.session.stats
            received, rejected = stats.received, stats.rejected.copy()
            push = self.session.push
            pushed = dataclasses.replace(push.stats) if push is not None else None
            replies, request = await asyncio.to_thread(self.session.parse, data)
            edge = self.edge_id
            if push is not None and pushed is not None:
                self._push_metrics(pushed, push.stats)
            self.metrics.received.labels(edge).inc(stats.received - received)
            self.metrics.received_bytes.labels(edge).inc(len(data))
            self.metrics.backlog.labels(edge).set(self.session.edge_backlog)
            beat = self.session.last_heartbeat
            if beat is not None:
                self.metrics.edge_reconnects.labels(edge).set(beat.reconnects)
                self.metrics.edge_spool_bytes.labels(edge).set(beat.spool_bytes)
            for code, n in (stats.rejected - rejected).items():
                self.metrics.errors.labels(code).inc(n)
            stored = await self.writer.enqueue(request) if request is not None else None
        return self._complete(replies, request, stored)

    def _push_metrics(self, before: PushStats, after: PushStats) -> None:
        edge, m = self.edge_id, self.metrics
        if after.offers > before.offers:
            m.codebook_offers.labels(edge).inc(after.offers - before.offers)
        if after.chunk_bytes > before.chunk_bytes:
            m.codebook_chunk_bytes.labels(edge).inc(after.chunk_bytes - before.chunk_bytes)
        if after.installed > before.installed:
            m.codebook_installs.labels(edge, "installed").inc(after.installed - before.installed)
        if after.refused > before.refused:
            m.codebook_installs.labels(edge, "refused").inc(after.refused - before.refused)

    async def _complete(
        self,
        replies: list[bytes],
        request: WriteRequest | None,
        stored: asyncio.Future[WriteResult] | None,
    ) -> list[bytes]:
        if request is None or stored is None:
            return replies
        edge = self.edge_id
        try:
            result = await stored
        except Exception as exc:
            logger.error("edge %s: storing failed, not acknowledged: %s", edge, exc)
            self.metrics.errors.labels(ErrorCode.INTERNAL.name).inc()
            return [*replies, self.session.refuse(ErrorCode.INTERNAL, "storage failed; send again")]
        self.metrics.stored.labels(edge).inc(len(result.stored))
        self.metrics.duplicates.labels(edge).inc(len(result.duplicates))
        if result.refused:  # frames that cannot be stored: refused one by one, session goes on
            self.metrics.errors.labels(ErrorCode.INTERNAL.name).inc(len(result.refused))
        newest = max(f.capture_ts_us for f in request.frames)
        self.metrics.lag.labels(edge).set(max(0.0, time.time() - newest / 1e6))
        return [*replies, *self.session.finish(request, result)]


async def pipelined(
    live: LiveSession,
    receive: Callable[[], Awaitable[bytes | None]],
    send: Callable[[bytes], Awaitable[None]],
    depth: int = PIPELINE_DEPTH,
) -> None:
    """Serve one connection: receive messages, store them, send the replies in order.

    Up to ``depth`` messages are in flight, so decoding the next overlaps committing this one
    and the writer's group commits grow. ``receive`` returns None when the connection ends;
    the loop also ends after the session is closed (a fatal Error was sent).
    """
    inflight: asyncio.Queue[Awaitable[list[bytes]] | None] = asyncio.Queue(depth)

    async def reply() -> None:
        while (done := await inflight.get()) is not None:
            for frame in await done:
                await send(frame)

    replier = asyncio.create_task(reply())
    link = live.session.link
    link.session_opened(live.edge_id, live.session_id, live.transport)
    try:
        while not live.closed and not replier.done():
            data = await receive()
            if data is None:
                break
            try:
                pending = await live.begin(data)
            except Exception:  # e.g. the writer is shutting down: no ack, the edge resends
                logger.exception("edge %s: could not store a message", live.edge_id)
                continue
            await inflight.put(pending)
        await inflight.put(None)
        await replier
    finally:
        link.session_closed(live.edge_id, live.session_id)
        if not replier.done():
            replier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replier
        _drop_replies(inflight)


def _drop_replies(inflight: asyncio.Queue[Awaitable[list[bytes]] | None]) -> None:
    """The connection ended with messages still in flight: their frames are stored (or not)
    by the writer all the same, but their replies have nowhere to go; close the coroutines
    that would have awaited them (never awaited, each was a RuntimeWarning)."""
    while not inflight.empty():
        pending = inflight.get_nowait()
        if asyncio.iscoroutine(pending):
            pending.close()


class Ingest:
    def __init__(
        self,
        store: Store,
        writer: Writer,
        metrics: CloudMetrics,
        link: LinkMonitor | None = None,
        codebooks: CodebookLibrary | None = None,
        offer_codebooks: bool = True,
    ) -> None:
        """``codebooks``: the fitted codebooks each session accepts and, with
        ``offer_codebooks``, offers to its edge (:mod:`cloud.codebook_push`)."""
        self.store = store
        self.writer = writer
        self.metrics = metrics
        self.link = link if link is not None else LinkMonitor()
        self.codebooks = codebooks
        self.offer_codebooks = offer_codebooks

    def open(self, edge_id: str, transport: str = "") -> LiveSession:
        """A new session of ``edge_id`` over ``transport`` ("webrtc", "websocket")."""
        session_id = secrets.token_hex(8)
        session = EdgeSession(
            edge_id, session_id, self.store, self.link, self.codebooks, self.offer_codebooks
        )
        return LiveSession(session, self.writer, self.metrics, transport)
