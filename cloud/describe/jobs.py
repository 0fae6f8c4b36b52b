"""A durable job queue in the catalog's ``jobs`` table (SQLite and PostgreSQL).

States: ``queued`` -> ``running`` (claimed; ``attempts`` counts the runs) -> ``done``, or back
to ``queued`` with a delay (``not_before_us``) after a failed run, until ``max_attempts`` runs
have failed: then ``failed`` with the last error kept. Nothing is held in memory, so a job
survives a restart: :meth:`JobQueue.recover` puts jobs left ``running`` by a process that died
back in the queue.

- Enqueue is idempotent per ``(kind, key)`` (a unique index): the same window is queued once,
  whichever process asks first.
- Claim is one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING``: on PostgreSQL the
  inner select takes ``FOR UPDATE SKIP LOCKED``, so replicas claim different jobs without
  waiting on each other; SQLite runs the statement under its single write lock.

Times are microseconds since the Unix epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from sqlalchemy import Connection, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cloud.schema import jobs

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS: Final = 2000
MAX_DELAY_S: Final = 6 * 3600.0


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    key: str | None
    payload: dict[str, Any]
    attempts: int  # runs so far, this one included
    not_before_us: int


def _now_us() -> int:
    return time.time_ns() // 1000


class JobQueue:
    """Jobs of one ``kind``; every method is one short transaction (blocking)."""

    def __init__(
        self,
        engine: Engine,
        kind: str,
        max_attempts: int = 3,
        retry_s: float = 60.0,
        clock_us: Callable[[], int] = _now_us,
    ) -> None:
        self.engine = engine
        self.kind = kind
        self.max_attempts = max_attempts
        self.retry_s = retry_s
        self.clock_us = clock_us

    def enqueue(
        self, key: str | None, payload: dict[str, Any], not_before_us: int | None = None
    ) -> int | None:
        """Queue a job; None when a job with this key exists already (in any state)."""
        now = self.clock_us()
        values = {
            "kind": self.kind,
            "key": key,
            "state": JobState.QUEUED.value,
            "payload": payload,
            "attempts": 0,
            "not_before_us": now if not_before_us is None else not_before_us,
            "created_us": now,
            "updated_us": now,
        }
        if key is not None and self.exists(key):
            return None
        try:
            with self.engine.begin() as conn:
                return int(
                    conn.execute(jobs.insert().values(**values).returning(jobs.c.id)).scalar_one()
                )
        except IntegrityError:  # another process queued the same key meanwhile
            return None

    def exists(self, key: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(jobs.c.id).where(jobs.c.kind == self.kind, jobs.c.key == key)
            ).first()
        return found is not None

    def claim(self) -> Job | None:
        """The oldest due queued job, now ``running`` (its ``attempts`` counted), or None."""
        now = self.clock_us()
        due = (
            select(jobs.c.id)
            .where(
                jobs.c.state == JobState.QUEUED.value,
                jobs.c.not_before_us <= now,
                jobs.c.kind == self.kind,
            )
            .order_by(jobs.c.not_before_us, jobs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(jobs)
            .where(jobs.c.id == due, jobs.c.state == JobState.QUEUED.value)
            .values(state=JobState.RUNNING.value, attempts=jobs.c.attempts + 1, updated_us=now)
            .returning(jobs.c.id, jobs.c.key, jobs.c.payload, jobs.c.attempts, jobs.c.not_before_us)
        )
        with self.engine.begin() as conn:
            row = conn.execute(statement).first()
        if row is None:
            return None
        payload = row.payload if isinstance(row.payload, dict) else {}
        return Job(
            int(row.id), self.kind, row.key, payload, int(row.attempts), int(row.not_before_us)
        )

    def complete(self, job: Job, work: Callable[[Connection], Any] | None = None) -> None:
        """Mark ``job`` done, in one transaction with ``work`` (e.g. storing its result)."""
        with self.engine.begin() as conn:
            if work is not None:
                work(conn)
            self._set(conn, job, JobState.DONE, None, None)

    def fail(self, job: Job, error: str) -> JobState:
        """Record a failed run: queued again after a backoff, or ``failed`` after the last."""
        now = self.clock_us()
        if job.attempts >= self.max_attempts:
            state, when = JobState.FAILED, None
        else:
            delay_s = min(MAX_DELAY_S, self.retry_s * 2 ** (job.attempts - 1))
            state, when = JobState.QUEUED, now + int(delay_s * 1e6)
        with self.engine.begin() as conn:
            self._set(conn, job, state, error[:MAX_ERROR_CHARS], when)
        return state

    def release(self, job: Job) -> None:
        """Put a job this process will not finish (shutdown) back, its run not counted."""
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job.id, jobs.c.state == JobState.RUNNING.value)
                .values(
                    state=JobState.QUEUED.value,
                    attempts=jobs.c.attempts - 1,
                    updated_us=self.clock_us(),
                )
            )

    def recover(self, lease_s: float) -> int:
        """Queue again the jobs ``running`` for longer than ``lease_s`` (0: all of them).

        Their process died (or will not finish in time). The lost run counts: a job that
        has used its ``max_attempts`` (one that keeps killing its process) is ``failed``.
        """
        now = self.clock_us()
        stale = (
            jobs.c.kind == self.kind,
            jobs.c.state == JobState.RUNNING.value,
            jobs.c.updated_us <= now - int(lease_s * 1e6),
        )
        lost = "its process stopped while it was running"
        with self.engine.begin() as conn:
            failed = conn.execute(
                update(jobs)
                .where(*stale, jobs.c.attempts >= self.max_attempts)
                .values(state=JobState.FAILED.value, error=lost, updated_us=now)
            ).rowcount
            queued = conn.execute(
                update(jobs)
                .where(*stale)
                .values(state=JobState.QUEUED.value, error=lost, updated_us=now, not_before_us=now)
            ).rowcount
        if queued or failed:
            logger.warning(
                "describer: jobs left running by a stopped process: %d requeued, %d failed",
                queued,
                failed,
            )
        return int(queued)

    def counts(self) -> dict[str, int]:
        """Jobs per state."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.state, func.count())
                .where(jobs.c.kind == self.kind)
                .group_by(jobs.c.state)
            ).all()
        return {str(state): int(n) for state, n in rows}

    def _set(
        self,
        conn: Connection,
        job: Job,
        state: JobState,
        error: str | None,
        not_before_us: int | None,
    ) -> None:
        values: dict[str, Any] = {
            "state": state.value,
            "error": error,
            "updated_us": self.clock_us(),
        }
        if not_before_us is not None:
            values["not_before_us"] = not_before_us
        conn.execute(update(jobs).where(jobs.c.id == job.id).values(**values))
