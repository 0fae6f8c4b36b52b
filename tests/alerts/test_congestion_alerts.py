"""Congestion alerts through the real pipeline: scripted cars through the ingest path, the
real analytics runner (congestion windows and their change events), the real dispatcher and a
real HTTP receiver (SQLite, PostgreSQL).

A rule on ``congestion`` events with ``levels: [jammed, free]`` must alert once when a zone
jams and once when it clears, not on the slow window between, never again when everything is
analysed again or the dispatcher restarts; late data that change a window's level alert anew.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from cloud.alerts.config import AlertsConfig
from cloud.alerts.dispatcher import AlertDispatcher
from cloud.analytics.config import AnalyticsConfig
from cloud.analytics.metrics import AnalyticsMetrics
from cloud.analytics.runner import AnalyticsRunner
from cloud.analytics.scenes import put_scene, validate_scene
from cloud.db import open_database
from cloud.schema import cameras
from cloud.store import Store
from shared.vectors import CodecSet
from tests.alerts.conftest import Receiver
from tests.cloud.analytics_fixtures import T0, ingest
from tests.cloud.test_analytics_congestion import JAM, SCENE, SLOW, W, car, send


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    s = Store(engine, CodecSet())
    ingest(s, [])  # the Hello: edge and camera rows
    put_scene(engine, camera_id(engine), validate_scene(SCENE), time.time_ns() // 1000)
    return s


def camera_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(cameras.c.id)).scalar_one())


def runner(engine: Engine) -> AnalyticsRunner:
    return AnalyticsRunner(engine, AnalyticsConfig(), AnalyticsMetrics(CollectorRegistry()))


def dispatcher(engine: Engine, receiver: Receiver) -> AlertDispatcher:
    config = AlertsConfig.model_validate(
        {
            "start_at": "beginning",
            "rules": [
                {
                    "name": "jams",
                    "kinds": "congestion",
                    "levels": ["jammed", "free"],
                    "subjects": "queue",
                    "targets": ["ops"],
                }
            ],
            "webhooks": {"ops": {"url": receiver.url, "secret": "receiver-secret"}},
        }
    )
    return AlertDispatcher(config, engine, CollectorRegistry())


def dispatch(alerts: AlertDispatcher) -> None:
    """Steps until the dispatcher has caught up with the events."""

    async def main() -> None:
        while await alerts.step():
            pass

    asyncio.run(main())


def received(receiver: Receiver) -> list[tuple[int, str, str]]:
    """(window index from T0, level, previous level) of each alert received."""
    out = []
    for r in receiver.accepted:
        event: dict[str, Any] = r.body["event"]
        assert r.signed
        assert (event["kind"], event["subject"], event["track_id"]) == ("congestion", "queue", None)
        assert r.body["rule"] == "jams"
        out.append(((event["at_us"] - T0) // W, event["direction"], event["details"]["previous"]))
    return out


def test_a_jam_and_its_clearing_alert_once(
    engine: Engine, store: Store, receiver: Receiver
) -> None:
    seq = send(
        store,
        0,
        car(1, T0, 60, 0.3, JAM),  # W0: jammed
        car(2, T0, 60, 0.4, JAM),
        car(3, T0 + W, 60, 0.3, SLOW),  # W1: slow (a change, but no alert for this rule)
        car(4, T0 + W, 60, 0.4, SLOW),
        car(5, T0 + 3 * W, 1, 0.3, SLOW),  # W3: closes W2, empty: free
    )
    analytics, alerts = runner(engine), dispatcher(engine, receiver)
    analytics.run_once()
    dispatch(alerts)
    # alerts are delivered concurrently: their order of arrival is not defined
    assert sorted(received(receiver)) == [(0, "jammed", "free"), (2, "free", "slow")]
    body = next(r.body for r in receiver.accepted if r.body["event"]["direction"] == "jammed")
    assert body["event"]["value"] == 2.0  # the window's occupancy
    assert body["event"]["unit"] == "vehicles"
    assert body["camera"]["name"] == "cam-a"

    # Analysed again (a restart, a reprocess), a restarted dispatcher: no alert again.
    analytics.reprocess(camera_id(engine))
    analytics.run_once()
    runner(engine).run_once()
    dispatch(alerts)
    dispatch(dispatcher(engine, receiver))
    assert len(receiver.received) == 2

    # Late data: two cars crawled through W2 after all. W2 was free and is jammed: alerted.
    send(store, seq, car(6, T0 + 2 * W, 60, 0.3, JAM), car(7, T0 + 2 * W, 60, 0.4, JAM))
    analytics.run_once()
    dispatch(alerts)
    assert received(receiver)[2:] == [(2, "jammed", "slow")]
    assert receiver.accepted[2].body["event"]["at"] == "2026-11-24T10:02:00Z"
