"""Congestion windows through the real ingest path and the analytics runner (SQLite,
PostgreSQL).

Cars cross a zone covering most of the frame in a straight line at constant speed, each one
present for a known time of known one-minute windows, so occupancy is exact (two vehicles all
window long: 2.0; one for 30 s: 0.5) and so is the mean speed: every position lies on the
wire's box grid (1/65535 of the frame), so a car moving ``k`` grid steps per 0.5 s sample goes
``2k/65535`` image widths per second, measured without rounding.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from cloud.analytics.config import AnalyticsConfig
from cloud.analytics.metrics import AnalyticsMetrics
from cloud.analytics.runner import AnalyticsRunner
from cloud.analytics.scenes import put_scene, validate_scene
from cloud.db import open_database
from cloud.schema import analytics_events, cameras, congestion_windows
from cloud.store import Store
from shared.geometry import BOX_UNITS
from shared.vectors import CodecSet
from tests.cloud.analytics_fixtures import CAR, PERSON, T0, Road, S, Scripted, ingest

W = 60 * S  # the default window
JAM, SLOW, FREE = 33, 100, 330  # grid steps per sample: about 0.001, 0.003, 0.01 widths/s
ZONE = [[0.05, 0.05], [0.95, 0.05], [0.95, 0.95], [0.05, 0.95]]
# thresholds in image widths per second (no calibration); 1 vehicle on average is enough
RULE = {"min_occupancy": 1.0, "slow_below": 0.005, "jammed_below": 0.002}
SCENE: dict[str, Any] = {
    "frame": {"width": 1280, "height": 720},
    "zones": {"queue": {"polygon": ZONE, "congestion": RULE}},
}


def speed(steps: int) -> float:
    """Image widths per second of a car moving ``steps`` grid steps per 0.5 s."""
    return 2 * steps / BOX_UNITS


def car(
    local_id: int, start_us: int, seconds: int, y: float, steps: int, cls: int = CAR
) -> Scripted:
    """A track sampled every 0.5 s over ``[start_us, start_us + seconds]``, moving right."""
    x0 = round(0.2 * BOX_UNITS)
    points = [
        (start_us + i * S // 2, (x0 + i * steps) / BOX_UNITS, y) for i in range(2 * seconds + 1)
    ]
    return Scripted(local_id, cls, points)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    s = Store(engine, CodecSet())
    ingest(s, [])  # the Hello: edge and camera rows
    return s


def camera_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(cameras.c.id)).scalar_one())


def set_scene(engine: Engine, scene: dict[str, Any]) -> None:
    put_scene(engine, camera_id(engine), validate_scene(scene), time.time_ns() // 1000)


def new_runner(engine: Engine) -> tuple[AnalyticsRunner, CollectorRegistry]:
    registry = CollectorRegistry()
    return AnalyticsRunner(engine, AnalyticsConfig(), AnalyticsMetrics(registry)), registry


def windows(engine: Engine) -> dict[int, Any]:
    """Window index from T0 -> its row."""
    with engine.connect() as conn:
        rows = conn.execute(select(congestion_windows).order_by(congestion_windows.c.start_us))
        return {(r.start_us - T0) // W: r for r in rows}


def changes(engine: Engine) -> dict[int, tuple[str, str, int]]:
    """Window index from T0 -> (level, previous level, event id) of its change event."""
    e = analytics_events.c
    with engine.connect() as conn:
        rows = conn.execute(select(analytics_events).where(e.kind == "congestion"))
        return {(r.at_us - T0) // W: (r.direction, r.details["previous"], r.id) for r in rows}


def levels(engine: Engine) -> dict[int, str]:
    return {k: r.level for k, r in windows(engine).items()}


def send(store: Store, seq: int, *tracks: Scripted) -> int:
    """Ingest ``tracks`` (Detections, then their TrackEnds); returns the last seq used."""
    road = Road(list(tracks), seq=seq)
    ingest(store, road.frames())
    return road.seq


def everything(engine: Engine) -> tuple[list[Any], list[Any]]:
    with engine.connect() as conn:
        return (
            [tuple(r) for r in conn.execute(select(congestion_windows).order_by("id"))],
            [tuple(r) for r in conn.execute(select(analytics_events).order_by("id"))],
        )


def gauge(registry: CollectorRegistry) -> float | None:
    labels = {"camera": "edge-01/cam-a", "zone": "queue"}
    return registry.get_sample_value("semcom_analytics_congestion_level", labels)


def test_windows_are_exact_late_data_updates_them_and_changes_alert_once(
    engine: Engine, store: Store
) -> None:
    set_scene(engine, SCENE)
    cam = camera_id(engine)
    seq = send(
        store,
        0,
        car(1, T0 + 15 * S, 30, 0.3, JAM),  # W0: one car for 30 s -> 0.5, free (few)
        car(2, T0 + W, 60, 0.3, SLOW),  # W1: two cars all window -> 2.0, slow
        car(3, T0 + W, 60, 0.4, SLOW),
        car(4, T0 + 2 * W, 60, 0.3, FREE),  # W2: 2.0, free by speed
        car(5, T0 + 2 * W, 60, 0.4, FREE),
        car(6, T0 + 3 * W, 60, 0.3, JAM),  # W3: 2.0, jammed
        car(7, T0 + 3 * W, 60, 0.4, JAM),
        car(8, T0 + 3 * W, 60, 0.5, JAM, cls=PERSON),  # not a vehicle
    )  # the newest data end W3: W0..W3 are closed
    runner, registry = new_runner(engine)
    stats = runner.run_once()
    rows = windows(engine)
    assert sorted(rows) == [0, 1, 2, 3]
    figures = {k: (r.occupancy, r.vehicles, r.level, r.provisional) for k, r in rows.items()}
    assert figures == {
        0: (0.5, 1, "free", False),
        1: (2.0, 2, "slow", False),
        2: (2.0, 2, "free", False),
        3: (2.0, 2, "jammed", False),
    }
    for k, steps in ((0, JAM), (1, SLOW), (2, FREE), (3, JAM)):
        assert rows[k].mean_speed == pytest.approx(speed(steps), rel=1e-9)
        assert rows[k].speed_unit == "image_widths/s"
    assert {r.window_us for r in rows.values()} == {W}
    assert rows[3].mean_speed < RULE["jammed_below"] < rows[1].mean_speed < RULE["slow_below"]
    assert rows[2].mean_speed > RULE["slow_below"]
    first = changes(engine)
    assert {k: v[:2] for k, v in first.items()} == {
        1: ("slow", "free"),
        2: ("free", "slow"),
        3: ("jammed", "free"),
    }
    assert stats.congestion_changes == 3
    with engine.connect() as conn:
        event = conn.execute(
            select(analytics_events).where(analytics_events.c.kind == "congestion").limit(1)
        ).one()
    assert (event.track_id, event.subject, event.class_id) == (-cam, "queue", None)
    assert (event.value, event.unit) == (rows[(event.at_us - T0) // W].occupancy, "vehicles")
    assert gauge(registry) == 2.0  # W3, the newest closed window: jammed

    # Nothing new: nothing written; everything analysed again, here and by a fresh runner.
    before = everything(engine)
    assert runner.run_once().windows == 0
    runner.reprocess(cam)
    again = runner.run_once()
    assert (again.analysed, again.windows, again.congestion_changes) == (8, 0, 0)
    fresh, _ = new_runner(engine)
    fresh.reprocess(cam)
    assert fresh.run_once().windows == 0
    assert everything(engine) == before

    # An edge drains its spool: four more cars crawl through W1 -> jammed. The slow event
    # there becomes a jammed one (a new event, for the alert rules), W2's is updated in place.
    late = [car(20 + i, T0 + W, 60, 0.5 + 0.1 * i, JAM) for i in range(4)]
    seq = send(store, seq, *late)
    stats = runner.run_once()
    assert stats.congestion_changes == 1
    assert rows_of(engine, 1) == (6.0, 6, "jammed", False)
    assert windows(engine)[1].mean_speed == pytest.approx((2 * speed(SLOW) + 4 * speed(JAM)) / 6)
    second = changes(engine)
    assert {k: v[:2] for k, v in second.items()} == {
        1: ("jammed", "free"),
        2: ("free", "jammed"),
        3: ("jammed", "free"),
    }
    assert second[1][2] > max(v[2] for v in first.values())  # a new event
    assert (second[2][2], second[3][2]) == (first[2][2], first[3][2])  # the same rows

    # Later still, one car crawls all through W0 with the first: jammed (1.5 vehicles). W0
    # gets a change event; W1 no longer changes anything.
    seq = send(store, seq, car(30, T0, 60, 0.6, JAM))
    runner.run_once()
    assert rows_of(engine, 0) == (1.5, 2, "jammed", False)
    assert {k: v[:2] for k, v in changes(engine).items()} == {
        0: ("jammed", "free"),
        2: ("free", "jammed"),
        3: ("jammed", "free"),
    }

    # New data (one car for 1 s in W6) close W4 and W5, empty: W4 clears the jam of W3.
    seq = send(store, seq, car(40, T0 + 6 * W + 30 * S, 1, 0.3, FREE))
    runner.run_once()
    assert not {4, 5} & set(windows(engine))
    assert rows_of(engine, 6) == (1 / 60, 1, "free", True)  # open
    assert changes(engine)[4][:2] == ("free", "jammed")
    assert gauge(registry) == 0.0  # W5: free
    send(store, seq, car(41, T0 + 8 * W, 1, 0.3, FREE))  # closes W6
    runner.run_once()
    assert rows_of(engine, 6) == (1 / 60, 1, "free", False)
    assert set(changes(engine)) == {0, 2, 3, 4}

    before = everything(engine)
    runner.reprocess(cam)
    again = runner.run_once()
    assert (again.analysed, again.windows, again.congestion_changes) == (15, 0, 0)
    assert everything(engine) == before


def rows_of(engine: Engine, k: int) -> tuple[float, int, str, bool]:
    r = windows(engine)[k]
    return r.occupancy, r.vehicles, r.level, r.provisional


def test_a_calibrated_scene_measures_in_kmh(engine: Engine, store: Store) -> None:
    """100 m per image width and height: a car moving 2k/65535 widths per second drives at
    2k/65535 * 100 * 3.6 km/h; the zone's default km/h thresholds (slow below 20, jammed
    below 5, with 2 vehicles on average) make two such crawling cars a jam."""
    corners = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]
    points = [{"image": [x, y], "ground": [100 * x, 100 * y]} for x, y in corners]
    scene = {
        "frame": {"width": 1280, "height": 720},
        "zones": {"queue": {"polygon": ZONE}},
        "calibration": {"points": points},
    }
    set_scene(engine, scene)
    send(store, 0, car(1, T0, 60, 0.3, JAM), car(2, T0, 60, 0.4, JAM))
    new_runner(engine)[0].run_once()
    row = windows(engine)[0]
    assert (row.occupancy, row.vehicles, row.level, row.speed_unit) == (2.0, 2, "jammed", "km/h")
    assert row.mean_speed == pytest.approx(speed(JAM) * 100 * 3.6, rel=1e-6)
