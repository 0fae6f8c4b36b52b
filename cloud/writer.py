"""The ingest writer: one thread that group-commits what every session received.

Sessions :meth:`~Writer.submit` a :class:`~cloud.store.WriteRequest` and await its result; the
writer takes everything queued meanwhile (up to ``max_batch_frames``), stores it in one
transaction and resolves each waiting session, which then sends its Ack. One transaction for
many small messages is what makes SQLite fast here, and a single writer never contends with
itself for SQLite's write lock.

Backpressure: at most ``max_pending`` frames wait for the writer; a session submitting more
waits (so its acks wait, and the edge's send window closes) until the writer catches up.
After a commit the decoded vectors go to ``on_vectors`` (the indexer), never before.

A failed group commit is retried request by request, and a failing request frame by frame
(:meth:`~cloud.store.Store.write_alone`): a frame that cannot be stored is refused alone and
never fails another frame, session or edge. Only an unavailable database fails them all.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cloud.metrics import CloudMetrics
from cloud.project import NewVectors
from cloud.store import Store, WriteRequest, WriteResult, is_unavailable

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    request: WriteRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult]


class WriterStopped(RuntimeError):
    """The writer is shut down; nothing was stored."""


class Writer:
    def __init__(
        self,
        store: Store,
        metrics: CloudMetrics,
        on_vectors: Callable[[list[NewVectors]], None] = lambda _v: None,
        max_pending: int = 20_000,
        max_batch_frames: int = 5_000,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.on_vectors = on_vectors
        self.max_pending = max_pending
        self.max_batch_frames = max_batch_frames
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._room: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.commits = 0
        """Group commits done (or attempted) since start: tells when ingest is idle."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the thread."""
        self._stopped = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    @property
    def pending(self) -> int:
        return self._pending

    async def submit(self, request: WriteRequest) -> WriteResult:
        """Store ``request`` (after waiting for room); raises what the transaction raised."""
        return await (await self.enqueue(request))

    async def enqueue(self, request: WriteRequest) -> asyncio.Future[WriteResult]:
        """Queue ``request`` once there is room; the future resolves after its commit.

        Requests are stored in the order they are queued, so one session may keep several in
        flight (decoding the next message while this one commits) and still be stored in order.
        """
        if self._stopped:
            raise WriterStopped("the cloud is shutting down")
        if self._room is None:
            self._room = asyncio.Event()
        n = len(request.frames)
        if self._pending > 0 and self._pending + n > self.max_pending:
            self.metrics.backpressure.inc()
            while self._pending > 0 and self._pending + n > self.max_pending:
                self._room.clear()
                await self._room.wait()
        with self._lock:
            self._pending += n
        self.metrics.writer_pending.set(self._pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        future.add_done_callback(lambda _f: self._release(n))
        self._queue.put(_Job(request, loop, future))
        return future

    def _release(self, n: int) -> None:
        """On the event loop, when a queued request is settled: make room for the waiters."""
        with self._lock:
            self._pending -= n
        self.metrics.writer_pending.set(self._pending)
        if self._room is not None:
            self._room.set()

    def _take(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs, frames = [first], len(first.request.frames)
        while frames < self.max_batch_frames:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this batch
                break
            jobs.append(job)
            frames += len(job.request.frames)
        return jobs

    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            self.commits += 1
            started = time.perf_counter()
            try:
                results, vectors = self.store.write([j.request for j in jobs])
            except Exception as exc:
                self._isolate(jobs, exc)
                continue
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            self.metrics.commit_frames.observe(sum(len(j.request.frames) for j in jobs))
            self._done(jobs, results, vectors)

    def _done(
        self, jobs: list[_Job], results: list[WriteResult], vectors: list[NewVectors]
    ) -> None:
        if vectors:  # queued for the index before any ack: an acked vector is on its way
            self.on_vectors(vectors)
        for job, result in zip(jobs, results, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, result)

    def _isolate(self, jobs: list[_Job], error: Exception) -> None:
        """A group commit failed. When the database is unavailable, nothing is stored and
        nothing refused (the sessions end unacknowledged; the edges resend later). Otherwise
        one frame is to blame: each request is stored alone, and a failing one frame by frame
        (:meth:`Store.write_alone`), so only the frames that cannot be stored are refused."""
        for job in jobs:
            if is_unavailable(error):
                self._failed(job, error)
                continue
            try:
                result, vectors = self.store.write_alone(job.request)
            except Exception as exc:
                self._failed(job, exc)
                continue
            self._done([job], [result], vectors)

    def _failed(self, job: _Job, error: Exception) -> None:
        logger.error(
            "ingest transaction for edge %s failed; %d frames not acknowledged",
            job.request.edge_id,
            len(job.request.frames),
            exc_info=error,
        )
        self.metrics.write_failures.inc()
        job.loop.call_soon_threadsafe(_fail, job.future, RuntimeError("storing failed"))


def _resolve(future: asyncio.Future[WriteResult], result: WriteResult) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[WriteResult], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
