"""Leases: a task led by one replica at a time, over real PostgreSQL advisory locks.

Two :class:`~cloud.leases.Leases` on two engines of one database stand for two replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import Engine

from cloud.db import make_engine
from cloud.leases import CHECK_TIMEOUT_S, Leases, Work

CHECK_S = 0.2


class Counted:
    """A led loop that records who runs it, and when two run at once."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.terms: list[str] = []
        self.overlaps = 0

    def work(self, who: str) -> Work:
        async def loop() -> None:
            self.terms.append(who)
            self.running.append(who)
            if len(self.running) > 1:
                self.overlaps += 1
            try:
                while True:
                    await asyncio.sleep(0.05)
            finally:
                self.running.remove(who)

        return loop


@pytest.fixture
def engines(postgres_url: str) -> Iterator[tuple[Engine, Engine]]:
    a, b = make_engine(postgres_url), make_engine(postgres_url)
    yield a, b
    a.dispose()
    b.dispose()


def leader_value(leases: Leases, name: str) -> float:
    return leases.leader.labels(name, leases.replica)._value.get()  # type: ignore[no-any-return]


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.mark.postgres
def test_one_replica_leads_and_the_other_takes_over_when_it_stops(
    engines: tuple[Engine, Engine],
) -> None:
    a = Leases(engines[0], CollectorRegistry(), replica="a", check_s=CHECK_S)
    b = Leases(engines[1], CollectorRegistry(), replica="b", check_s=CHECK_S)
    seen = Counted()

    async def scenario() -> None:
        led_a = asyncio.create_task(a.led("retention", seen.work("a")))
        await until(lambda: seen.running == ["a"], 10, "a to lead")
        led_b = asyncio.create_task(b.led("retention", seen.work("b")))
        await asyncio.sleep(5 * CHECK_S)  # b tried several times meanwhile
        assert seen.running == ["a"]
        assert a.leads("retention")
        assert not b.leads("retention")
        assert (leader_value(a, "retention"), leader_value(b, "retention")) == (1, 0)
        led_a.cancel()  # replica a shuts down: its lease is let go at once
        with pytest.raises(asyncio.CancelledError):
            await led_a
        assert seen.running == []
        await until(lambda: seen.running == ["b"], 5 * CHECK_S + 2, "b to take over")
        assert (leader_value(a, "retention"), leader_value(b, "retention")) == (0, 1)
        led_b.cancel()
        with pytest.raises(asyncio.CancelledError):
            await led_b

    asyncio.run(scenario())
    a.close()
    b.close()
    assert seen.terms == ["a", "b"]
    assert seen.overlaps == 0


@pytest.mark.postgres
def test_distinct_leases_are_independent(engines: tuple[Engine, Engine]) -> None:
    a = Leases(engines[0], CollectorRegistry(), replica="a", check_s=CHECK_S)
    b = Leases(engines[1], CollectorRegistry(), replica="b", check_s=CHECK_S)
    x, y = Counted(), Counted()

    async def scenario() -> None:
        tasks = [
            asyncio.create_task(a.led("analytics", x.work("a"))),
            asyncio.create_task(b.led("alerts", y.work("b"))),
            asyncio.create_task(b.led("analytics", x.work("b"))),
            asyncio.create_task(a.led("alerts", y.work("a"))),
        ]
        await until(lambda: len(x.running) == len(y.running) == 1, 10, "both led")
        await asyncio.sleep(5 * CHECK_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    a.close()
    b.close()
    assert x.overlaps == y.overlaps == 0
    assert len(x.terms) == len(y.terms) == 1


@pytest.mark.postgres
def test_a_leader_whose_lock_session_is_killed_steps_down_and_the_other_leads(
    engines: tuple[Engine, Engine], postgres_url: str
) -> None:
    """The lock's session ends (the server restarted it, a network cut): the server frees the
    lock, the other replica takes it, and the old leader cancels its loop within one check."""
    a = Leases(engines[0], CollectorRegistry(), replica="a", check_s=CHECK_S)
    b = Leases(engines[1], CollectorRegistry(), replica="b", check_s=CHECK_S)
    seen = Counted()
    admin = make_engine(postgres_url)

    async def scenario() -> float:
        led_a = asyncio.create_task(a.led("alerts", seen.work("a")))
        await until(lambda: seen.running == ["a"], 10, "a to lead")
        led_b = asyncio.create_task(b.led("alerts", seen.work("b")))
        await asyncio.sleep(2 * CHECK_S)
        with admin.connect() as conn:  # end a's lock session (only a holds an advisory lock)
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).all()
        assert len(killed) == 1
        cut = time.monotonic()
        await until(lambda: "a" not in seen.running, CHECK_S + CHECK_TIMEOUT_S + 1, "a to stop")
        stopped = time.monotonic() - cut
        await until(lambda: seen.running == ["b"], 5 * CHECK_S + 2, "b to lead")
        assert b.leads("alerts")
        assert not a.leads("alerts")
        for task in (led_a, led_b):
            task.cancel()
        await asyncio.gather(led_a, led_b, return_exceptions=True)
        return stopped

    stopped = asyncio.run(scenario())
    a.close()
    b.close()
    admin.dispose()
    assert stopped <= CHECK_S + CHECK_TIMEOUT_S
    assert seen.terms[:2] == ["a", "b"]


def test_on_sqlite_the_only_process_always_leads(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    leases = Leases(engine, CollectorRegistry(), replica="solo")
    seen = Counted()

    async def scenario() -> None:
        task = asyncio.create_task(leases.led("retention", seen.work("solo")))
        await until(lambda: seen.running == ["solo"], 5, "the loop")
        assert leases.leads("retention")
        assert leader_value(leases, "retention") == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    leases.close()
    engine.dispose()
