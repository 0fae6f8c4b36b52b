"""The describer's context and rules with an analytics scene (SQLite, PostgreSQL): the window's
crossings, incidents and measured speeds (km/h with a calibration, labelled image widths per
second without), from traffic that went through the ingest path and the runner."""

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
from cloud.describe.context import ContextSettings, Window, build_context
from cloud.describe.rules import RulesDescriber
from cloud.describe.schema import IncidentKind
from cloud.schema import cameras
from cloud.store import Store
from shared.vectors import CodecSet
from tests.cloud.analytics_fixtures import CAR, SCENE, T0, TRUCK, Road, S, ingest

# 40 m per image width, 22.5 m per image height (a top-down view of a 16:9 frame)
CALIBRATION = {
    "points": [
        {"image": [x, y], "ground": [40 * x, 22.5 * y]}
        for x, y in ((0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9))
    ]
}


def world(url: str, scene: dict[str, Any]) -> tuple[Engine, int]:
    engine = open_database(url)
    store = Store(engine, CodecSet())
    ingest(store, [])
    with engine.connect() as conn:
        camera = int(conn.execute(select(cameras.c.id)).scalar_one())
    put_scene(engine, camera, validate_scene(scene), time.time_ns() // 1000)
    road = Road()
    road.add(1, CAR, (0.3, 0.2), (0.3, 0.8), T0, 6)  # 13.5 m in 6 s: 8.1 km/h, crosses in
    truck = road.add(2, TRUCK, (0.7, 0.3), (0.8, 0.8), T0, 4)  # into the lot ...
    truck.points += [(T0 + 4 * S + i * S // 2, 0.8, 0.8) for i in range(1, 41)]  # ... 20 s still
    ingest(store, road.frames())
    AnalyticsRunner(engine, AnalyticsConfig(), AnalyticsMetrics(CollectorRegistry())).run_once()
    return engine, camera


@pytest.fixture
def calibrated(database_url: str) -> Iterator[tuple[Engine, int]]:
    engine, camera = world(database_url, {**SCENE, "calibration": CALIBRATION})
    yield engine, camera
    engine.dispose()


def test_context_and_rules_with_a_calibrated_scene(calibrated: tuple[Engine, int]) -> None:
    engine, camera = calibrated
    ctx = build_context(engine, Window(camera, T0, T0 + 60 * S), ContextSettings())
    figures = ctx.analytics
    assert figures is not None
    assert figures.calibrated
    assert figures.crossings == {("gate", "in", CAR): 1, ("gate", "in", TRUCK): 1}
    assert [(i.kind, i.subject, i.class_id) for i in figures.incidents] == [
        ("stopped_vehicle", "lot", TRUCK)
    ]
    data = ctx.prompt_data()
    analytics = data["analytics"]
    assert analytics["speed_unit"] == "km/h"
    car = analytics["median_speed_by_class"]["car"]
    assert car["unit"] == "km/h"
    assert car["value"] == pytest.approx(8.1, rel=0.02)
    assert {"line": "gate", "direction": "in", "class": "car", "count": 1} in (
        analytics["line_crossings"]
    )
    speeds = {t["class"]: t["measured_speed"] for t in data["tracks"]}
    assert speeds["car"]["unit"] == "km/h"
    assert any("km/h" in note for note in data["notes"])
    out = RulesDescriber().describe_now(ctx)
    assert "Line crossings: gate 2 in." in out.summary
    assert "km/h" in out.summary
    stopped = [i for i in out.incidents if i.kind is IncidentKind.STOPPED_VEHICLE]
    assert len(stopped) == 1  # the scene's (20 s in the lot; the rules need 30 s)
    assert "zone lot" in stopped[0].description


def test_without_calibration_speeds_are_labelled_image_widths(database_url: str) -> None:
    engine, camera = world(database_url, SCENE)
    try:
        ctx = build_context(engine, Window(camera, T0, T0 + 60 * S), ContextSettings())
        assert ctx.analytics is not None
        assert not ctx.analytics.calibrated
        data = ctx.prompt_data()
        assert data["analytics"]["speed_unit"] == "image_widths/s"
        assert data["analytics"]["median_speed_by_class"]["car"]["unit"] == "image_widths/s"
        out = RulesDescriber().describe_now(ctx)
        assert "image_widths/s" in out.summary
        assert "km/h" not in out.summary
        # a window without events still has the scene's (empty) figures
        quiet = build_context(engine, Window(camera, T0 + 3600 * S, T0 + 3660 * S),
                              ContextSettings())  # fmt: skip
        assert quiet.analytics is not None
        assert quiet.analytics.crossings == {}
    finally:
        engine.dispose()
