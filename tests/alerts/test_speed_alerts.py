"""Speed alerts through the real pipeline: scripted tracks through the ingest path, the real
analytics runner, the real dispatcher, a real HTTP receiver (SQLite, PostgreSQL).

A track's speed is the median over all its samples, recomputed as the track grows; a rule
``speed_above`` must fire once per track on the settled speed (the track ended), not on the
first, short measurement: a vehicle that speeds up later alerts, one that slows down later
does not, and nothing alerts twice when the speed is corrected (late boxes, reprocessing)."""

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
from cloud.schema import analytics_events, cameras, tracks
from cloud.store import Store
from shared.vectors import CodecSet
from tests.alerts.conftest import Receiver
from tests.cloud.analytics_fixtures import CAR, SCENE, T0, Road, S, Scripted, ingest

#: The rule's threshold (image widths per second: the scene has no calibration).
THRESHOLD = 0.05
SLOW, FAST = 0.02, 0.1  # image widths per second


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    s = Store(engine, CodecSet())
    ingest(s, [])  # the Hello: edge and camera rows
    with engine.connect() as conn:
        camera = int(conn.execute(select(cameras.c.id)).scalar_one())
    put_scene(engine, camera, validate_scene(SCENE), time.time_ns() // 1000)
    return s


def runner(engine: Engine) -> AnalyticsRunner:
    return AnalyticsRunner(engine, AnalyticsConfig(), AnalyticsMetrics(CollectorRegistry()))


def dispatcher(engine: Engine, receiver: Receiver) -> AlertDispatcher:
    config = AlertsConfig.model_validate(
        {
            "start_at": "beginning",
            "rules": [
                {
                    "name": "fast",
                    "kinds": "speed",
                    "speed_above": THRESHOLD,
                    "speed_unit": "image_widths/s",
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


def along_x(
    local_id: int, y: float, phases: list[tuple[float, float]], step_us: int = S // 2
) -> Scripted:
    """A car moving right at ``y``: (seconds, image widths per second) phases in turn, a sample
    every ``step_us``, from x = 0.05 at T0 (clear of the scene's line and zone)."""
    points = [(T0, 0.05, y)]
    for seconds, speed in phases:
        for _ in range(round(seconds * S / step_us)):
            t, x, _ = points[-1]
            points.append((t + step_us, x + speed * step_us / S, y))
    return Scripted(local_id, CAR, points)


def alerts_by_local_id(engine: Engine, receiver: Receiver) -> list[tuple[int, int, float]]:
    """(the track's local id, the event's ordinal, the speed) of each alert received."""
    with engine.connect() as conn:
        local = dict(conn.execute(select(tracks.c.id, tracks.c.local_id)).all())
    return [
        (local[r.body["event"]["track_id"]], r.body["event"]["ordinal"], r.body["event"]["value"])
        for r in receiver.accepted
    ]


def speed_rows(engine: Engine) -> list[Any]:
    e = analytics_events
    with engine.connect() as conn:
        return list(conn.execute(select(e).where(e.c.kind == "speed").order_by(e.c.id)))


def test_a_speed_alert_fires_once_on_the_settled_speed(
    engine: Engine, store: Store, receiver: Receiver
) -> None:
    road = Road()
    # 1 speeds up after 3 s: its early speed is below the threshold, its settled speed above
    road.tracks.append(along_x(1, 0.2, [(3, SLOW), (5, FAST)]))
    # 2 slows down after 3 s: its early speed is above the threshold, its settled one below
    road.tracks.append(along_x(2, 0.3, [(3, FAST), (5, SLOW)]))
    early = road.frames(until_us=T0 + 3 * S + 1, ends=False)
    ingest(store, early)
    analytics, alerts = runner(engine), dispatcher(engine, receiver)
    analytics.run_once()
    provisional = {round(r.value, 3) for r in speed_rows(engine)}
    assert provisional == {SLOW, FAST}  # measured on the first 3 s
    dispatch(alerts)
    assert receiver.received == []  # neither track has ended: no speed is settled yet

    everything = road.frames(ends=True)
    ingest(store, everything[len(early) :])  # the rest of both tracks, and their ends
    analytics.run_once()
    dispatch(alerts)
    [(local_id, ordinal, value)] = alerts_by_local_id(engine, receiver)
    assert (local_id, ordinal) == (1, 1)
    assert value == pytest.approx(FAST, rel=0.01)
    assert len(speed_rows(engine)) == 2  # one speed per track, the settled one

    # Analysed again (a restart, a reprocess): the settled speeds are not alerted again.
    with engine.connect() as conn:
        camera = int(conn.execute(select(cameras.c.id)).scalar_one())
    analytics.reprocess(camera)
    analytics.run_once()
    runner(engine).run_once()
    dispatch(alerts)
    dispatch(dispatcher(engine, receiver))  # a restarted dispatcher: the saved cursor
    assert len(receiver.received) == 1


def test_an_end_before_its_boxes_alerts_once(
    engine: Engine, store: Store, receiver: Receiver
) -> None:
    """After an outage the edge's spool sends a track's end before its boxes: the speed
    settles on the end's path, then the boxes correct it in place, without a second alert."""
    road = Road()
    # seen every 0.1 s: its end's path holds every third box
    road.tracks.append(along_x(1, 0.2, [(6, FAST)], step_us=S // 10))
    frames = road.frames()
    end, boxes = frames[-1], frames[:-1]
    ingest(store, [end])
    analytics, alerts = runner(engine), dispatcher(engine, receiver)
    analytics.run_once()
    dispatch(alerts)
    [(local_id, ordinal, _)] = alerts_by_local_id(engine, receiver)
    assert (local_id, ordinal) == (1, 1)
    [settled] = speed_rows(engine)
    ingest(store, boxes)
    analytics.run_once()
    dispatch(alerts)
    [corrected] = speed_rows(engine)
    assert corrected.id == settled.id
    assert corrected.details["segments"] > settled.details["segments"]  # from the boxes now
    assert len(receiver.received) == 1
