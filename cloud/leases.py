"""Work that runs once across cloud replicas: a lease per task, held as a PostgreSQL lock.

Several ``semcom cloud serve`` replicas share one PostgreSQL catalog. Ingest, search and the
describer's job queue (``FOR UPDATE SKIP LOCKED``) are safe on every replica at once; some
loops are not: retention (deletes), the analytics runner (its passes keep state in memory)
and the alert dispatcher (one cursor, deliveries). :meth:`Leases.led` runs such a loop only
while this replica holds the task's lease:

- the lease is a session-level advisory lock (``pg_try_advisory_lock``) taken on a database
  connection of its own, held while leading. A replica that dies, or loses its connection,
  loses the lock with its session, and another replica takes it within ``check_s``;
- a leader checks its lock connection every ``check_s`` (a query answered within
  ``CHECK_TIMEOUT_S``); when it fails, the loop is cancelled at once, so two leaders overlap
  only while a broken connection is not yet noticed (at most ``check_s`` +
  ``CHECK_TIMEOUT_S``), and the loops led here are idempotent for that case (upserts by key,
  a saved cursor);
- every replica that does not lead tries to take the lease every ``check_s``;
- a led loop that ends or fails is logged and the lease let go; the replica tries again.

On SQLite one process owns the catalog: it always leads. ``semcom_lease_leader{lease,
replica}`` is 1 on the replica that leads the task, 0 elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Final

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from cloud.db import advisory_key

logger = logging.getLogger(__name__)

LEASE_CHECK_S: Final = 2.0  # a leader checks its lock, a follower tries to take it, this often
CHECK_TIMEOUT_S: Final = 5.0  # a lock connection that does not answer this fast is lost
#: libpq TCP keepalives on lock connections: a dead peer is noticed by the server in ~15 s,
#: which frees the lock for the other replicas
_KEEPALIVES: Final = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                      "keepalives_count": 5, "connect_timeout": 10}  # fmt: skip

Work = Callable[[], Coroutine[Any, Any, None]]


def replica_name() -> str:
    """This process as the leader metric and the logs name it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leases:
    """Leadership of named tasks among the replicas sharing ``engine``'s database."""

    def __init__(
        self,
        engine: Engine,
        registry: CollectorRegistry,
        *,
        replica: str | None = None,
        check_s: float = LEASE_CHECK_S,
    ) -> None:
        self.replica = replica or replica_name()
        self.check_s = check_s
        self.shared = engine.dialect.name == "postgresql"
        # lock connections live as long as a lease: never from (nor back to) the app's pool
        self._engine = (
            create_engine(engine.url, poolclass=NullPool, connect_args=dict(_KEEPALIVES))
            if self.shared
            else None
        )
        self._held: set[str] = set()
        self.leader = Gauge(
            "semcom_lease_leader",
            "1 on the replica that runs the task (retention, analytics, alerts), 0 elsewhere.",
            ["lease", "replica"],
            registry=registry,
        )

    def leads(self, name: str) -> bool:
        """Whether this replica runs ``name`` now (always, on SQLite)."""
        return not self.shared or name in self._held

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    async def led(self, name: str, work: Work) -> None:
        """Run ``work()`` while this replica holds the lease ``name``; until cancelled.

        ``work`` makes a fresh coroutine per term (a loop that runs until cancelled)."""
        if not self.shared:
            self._set(name, True)
            await work()
            return
        key = advisory_key(f"lease:{name}")
        self._set(name, False)
        while True:
            conn = await self._take(name, key)
            if conn is None:
                await asyncio.sleep(self.check_s)
                continue
            await self._lead(name, key, conn, work)
            await asyncio.sleep(self.check_s)  # leave a fair chance to the other replicas

    async def _take(self, name: str, key: int) -> Connection | None:
        attempt = asyncio.ensure_future(asyncio.to_thread(self._try_lock, key))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:  # shutting down: a lock taken meanwhile goes at once
            attempt.add_done_callback(_drop_taken)
            raise
        except Exception as exc:  # the database is down: try again later
            logger.warning("lease %s: cannot try the lock (%s); retrying", name, exc)
            return None

    def _try_lock(self, key: int) -> Connection | None:
        assert self._engine is not None
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            if got.scalar_one():
                return conn
        except BaseException:
            conn.close()
            raise
        conn.close()
        return None

    async def _lead(self, name: str, key: int, conn: Connection, work: Work) -> None:
        self._held.add(name)
        self._set(name, True)
        logger.info("replica %s leads %s", self.replica, name)
        task = asyncio.create_task(work(), name=f"lease-{name}")
        lost = False
        try:
            while not lost:
                done, _ = await asyncio.wait({task}, timeout=self.check_s)
                if done:
                    _log_end(name, task)
                    break
                lost = not await self._holds(name, conn)
        finally:
            self._held.discard(name)
            self._set(name, False)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if lost:  # the connection may hang: close it aside, never wait on it
                threading.Thread(target=_close_quietly, args=(conn,), daemon=True).start()
            else:
                await asyncio.to_thread(_unlock, conn, key)
        logger.warning("replica %s stopped leading %s", self.replica, name)

    async def _holds(self, name: str, conn: Connection) -> bool:
        # asyncio.wait, not wait_for: before Python 3.12, wait_for loses a cancellation that
        # arrives as the ping completes (and the lease would never be let go)
        ping = asyncio.ensure_future(asyncio.to_thread(_ping, conn))
        done, _ = await asyncio.wait({ping}, timeout=CHECK_TIMEOUT_S)
        if not done:
            logger.error("lease %s: the lock connection did not answer; stepping down", name)
            return False
        exc = ping.exception()
        if exc is not None:
            logger.error("lease %s: the lock connection failed (%s); stepping down", name, exc)
            return False
        return True

    def _set(self, name: str, leading: bool) -> None:
        self.leader.labels(name, self.replica).set(1 if leading else 0)


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1")).scalar_one()


def _unlock(conn: Connection, key: int) -> None:
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except Exception as exc:  # closing the session frees the lock anyway
        logger.warning("releasing a lease lock failed (%s); closing its connection", exc)
    _close_quietly(conn)


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        conn.invalidate()
        conn.close()


def _drop_taken(attempt: asyncio.Future[Connection | None]) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        conn = attempt.result()
        if conn is not None:
            _close_quietly(conn)


def _log_end(name: str, task: asyncio.Task[None]) -> None:
    if task.cancelled():
        logger.warning("the %s loop was cancelled; letting its lease go", name)
        return
    exc = task.exception()
    if exc is not None:
        logger.error("the %s loop failed; letting its lease go", name, exc_info=exc)
    else:
        logger.warning("the %s loop ended; letting its lease go", name)
