"""The describer's job queue in the catalog, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from cloud import schema
from cloud.db import open_database
from cloud.describe.jobs import JobQueue, JobState

S = 1_000_000


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


class Clock:
    def __init__(self) -> None:
        self.us = 1_700_000_000 * S

    def __call__(self) -> int:
        return self.us


def test_enqueue_is_idempotent_and_claims_go_oldest_due_first(engine: Engine) -> None:
    clock = Clock()
    queue = JobQueue(engine, "describe", clock_us=clock)
    first = queue.enqueue("window:1:0", {"camera_id": 1})
    assert first is not None
    assert queue.enqueue("window:1:0", {"camera_id": 1}) is None  # same key: once
    later = queue.enqueue("window:1:60", {"camera_id": 1}, not_before_us=clock.us + 10 * S)
    assert JobQueue(engine, "other", clock_us=clock).enqueue("window:1:0", {}) is not None
    job = queue.claim()
    assert job is not None
    assert (job.id, job.attempts, job.payload) == (first, 1, {"camera_id": 1})
    assert queue.claim() is None  # the other is not due yet
    clock.us += 10 * S
    claimed = queue.claim()
    assert claimed is not None
    assert claimed.id == later
    assert queue.counts() == {"running": 2}


def test_failures_back_off_then_fail_with_the_error(engine: Engine) -> None:
    clock = Clock()
    queue = JobQueue(engine, "describe", max_attempts=2, retry_s=30, clock_us=clock)
    queue.enqueue("k", {})
    job = queue.claim()
    assert job is not None
    assert queue.fail(job, "DescribeFailed: no valid description after 4 attempts") == "queued"
    assert queue.claim() is None  # backing off for 30 s
    clock.us += 30 * S
    again = queue.claim()
    assert again is not None
    assert again.attempts == 2
    assert queue.fail(again, "still broken") is JobState.FAILED
    clock.us += 3600 * S
    assert queue.claim() is None
    with engine.connect() as conn:
        row = conn.execute(select(schema.jobs)).one()
    assert (row.state, row.attempts, row.error) == ("failed", 2, "still broken")


def test_jobs_survive_a_restart(engine: Engine) -> None:
    clock = Clock()
    queue = JobQueue(engine, "describe", max_attempts=2, clock_us=clock)
    for key in ("a", "b"):
        queue.enqueue(key, {"key": key})
    running = queue.claim()
    assert running is not None
    engine.dispose()  # the process "dies" with job a running

    restarted = JobQueue(open_database(str(engine.url)), "describe", max_attempts=2, clock_us=clock)
    assert restarted.recover(lease_s=60) == 0  # still within its lease: maybe alive elsewhere
    clock.us += 61 * S
    assert restarted.recover(lease_s=60) == 1
    claimed = [restarted.claim(), restarted.claim()]
    assert sorted(j.payload["key"] for j in claimed if j is not None) == ["a", "b"]
    # a job that keeps killing its process is failed once it has used its runs
    assert restarted.recover(lease_s=0) == 1  # b: first lost run, queued again
    assert restarted.counts() == {"failed": 1, "queued": 1}
    restarted.engine.dispose()


def test_concurrent_claims_never_share_a_job(engine: Engine) -> None:
    queue = JobQueue(engine, "describe")
    for i in range(40):
        queue.enqueue(f"w{i}", {"i": i})
    got: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (job := queue.claim()) is not None:
            with lock:
                got.append(job.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 40
    assert len(set(got)) == 40
