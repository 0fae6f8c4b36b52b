"""``GET /v1/analytics/congestion`` and congestion events on ``/v1/events`` over real HTTP, on
SQLite and PostgreSQL, over windows the runner computed from traffic sent through the real
ingest path (:mod:`tests.cloud.test_analytics_congestion` for the figures themselves)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from cloud.analytics.config import AnalyticsConfig
from cloud.analytics.metrics import AnalyticsMetrics
from cloud.analytics.runner import AnalyticsRunner
from cloud.analytics.scenes import put_scene, validate_scene
from cloud.db import open_database
from cloud.schema import cameras
from cloud.store import Store
from shared.vectors import CodecSet
from tests.cloud.analytics_fixtures import EDGE, T0, ingest
from tests.cloud.api_fixtures import LiveServer, client, error_of, make_app, postgres_database
from tests.cloud.test_analytics_congestion import FREE, JAM, RULE, ZONE, W, car, send, speed
from tests.cloud.test_api_analytics import analytics_deps

LANE = [[0.05, 0.6], [0.95, 0.6], [0.95, 0.95], [0.05, 0.95]]
SCENE: dict[str, Any] = {
    "frame": {"width": 1280, "height": 720},
    "zones": {"queue": {"polygon": ZONE, "congestion": RULE}, "lane": {"polygon": LANE}},
}
URL = "/v1/analytics/congestion"


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat().replace("+00:00", "Z")


def congestion_world(url: str) -> tuple[Engine, int]:
    """Zones ``queue`` (most of the frame) and ``lane`` (its lower part): two cars jam the
    queue in W0, one car drives through both zones for 30 s in W1, one for 1 s in W3 (open)."""
    engine = open_database(url)
    store = Store(engine, CodecSet())
    ingest(store, [])
    with engine.connect() as conn:
        camera = int(conn.execute(select(cameras.c.id)).scalar_one())
    put_scene(engine, camera, validate_scene(SCENE), time.time_ns() // 1000)
    send(
        store,
        0,
        car(1, T0, 60, 0.3, JAM),
        car(2, T0, 60, 0.4, JAM),
        car(3, T0 + W + 15 * 1_000_000, 30, 0.7, FREE),
        car(4, T0 + 3 * W, 1, 0.3, FREE),
    )
    AnalyticsRunner(engine, AnalyticsConfig(), AnalyticsMetrics(CollectorRegistry())).run_once()
    return engine, camera


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, int]]:
    if request.param == "sqlite":
        engine, camera = congestion_world(f"sqlite:///{tmp_path_factory.mktemp('g') / 'c.db'}")
        yield engine, camera
        engine.dispose()
        return
    with postgres_database(request.getfixturevalue("postgres_server")) as url:
        engine, camera = congestion_world(url)
        yield engine, camera
        engine.dispose()


@pytest.fixture(scope="module")
def server(world: tuple[Engine, int]) -> Iterator[str]:
    with LiveServer(make_app(analytics_deps(world[0]))) as live:
        yield live.url


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    with client(server) as c:
        yield c


def keys(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(w["zone"], w["start"]) for w in body["items"]]


def test_windows_newest_first_with_their_figures(
    api: httpx.Client, world: tuple[Engine, int]
) -> None:
    camera = world[1]
    body = api.get(URL, params={"camera": camera}).json()
    got = keys(body)
    assert got[0] == ("queue", _iso(T0 + 3 * W))
    assert set(got[1:3]) == {("lane", _iso(T0 + W)), ("queue", _iso(T0 + W))}
    assert got[3] == ("queue", _iso(T0))
    assert body["next_cursor"] is None
    jam = body["items"][3]
    assert jam == {
        "camera_id": camera,
        "zone": "queue",
        "start": _iso(T0),
        "end": _iso(T0 + W),
        "window_s": 60.0,
        "occupancy": 2.0,
        "mean_speed": pytest.approx(speed(JAM), rel=1e-9),
        "speed_unit": "image_widths/s",
        "vehicles": 2,
        "level": "jammed",
        "provisional": False,
        "scene_version": jam["scene_version"],
        "updated": jam["updated"],
    }
    [lane] = [w for w in body["items"] if w["zone"] == "lane"]
    assert (lane["occupancy"], lane["vehicles"], lane["level"]) == (0.5, 1, "free")
    assert body["items"][0]["provisional"] is True  # W3: the newest data end inside it


def test_filters_and_pages(api: httpx.Client, world: tuple[Engine, int]) -> None:
    camera = world[1]
    everything = keys(api.get(URL, params={"camera": camera}).json())
    lane = api.get(URL, params={"camera": camera, "zone": "lane"}).json()
    assert keys(lane) == [("lane", _iso(T0 + W))]
    w1 = api.get(URL, params={"camera": camera, "from": _iso(T0 + W), "to": _iso(T0 + 2 * W)})
    assert keys(w1.json()) == everything[1:3]
    unix = api.get(URL, params={"camera": camera, "from": (T0 + 3 * W) / 1e6}).json()
    assert keys(unix) == everything[:1]
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"camera": camera, "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = api.get(URL, params=params).json()
        seen += keys(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything


def test_parameters_are_checked(api: httpx.Client, world: tuple[Engine, int]) -> None:
    engine, camera = world
    message = error_of(api.get(URL, params={"camera": camera, "zone": "nope"}), 422)
    assert "'nope'" in message
    assert "lane, queue" in message
    assert "from" in error_of(
        api.get(URL, params={"camera": camera, "from": _iso(T0), "to": _iso(T0)}), 422
    )
    assert "cursor" in error_of(api.get(URL, params={"camera": camera, "cursor": "AAAA"}), 422)
    assert "camera" in error_of(api.get(URL), 422)
    assert "limit" in error_of(api.get(URL, params={"camera": camera, "limit": 0}), 422)
    error_of(api.get(URL, params={"camera": 999999}), 404, "not_found")
    with engine.begin() as conn:
        n = conn.execute(select(func.count()).select_from(cameras)).scalar_one()
        blank = conn.execute(
            insert(cameras)
            .values(edge_id=EDGE, name=f"blank-{n}", first_seen_us=T0)
            .returning(cameras.c.id)
        ).scalar_one()
    error_of(api.get(URL, params={"camera": blank}), 404, "not_found")  # no scene
    error_of(httpx.get(f"{api.base_url}{URL}", params={"camera": camera}), 401, "unauthorized")


def test_congestion_changes_are_events(api: httpx.Client, world: tuple[Engine, int]) -> None:
    camera = world[1]
    items = api.get("/v1/events", params={"camera": camera}).json()["items"]
    changes = [e for e in items if e["kind"] == "congestion"]  # listed by default
    assert [(e["subject"], e["time"], e["direction"]) for e in changes] == [
        ("queue", _iso(T0 + W), "free"),  # cleared
        ("queue", _iso(T0), "jammed"),
    ]
    jam = changes[1]
    assert (jam["track_id"], jam["class_id"], jam["value"], jam["unit"]) == (
        None, None, 2.0, "vehicles",
    )  # fmt: skip
    assert jam["details"]["previous"] == "free"
    only = api.get("/v1/events", params={"kind": "congestion"}).json()["items"]
    assert [e["id"] for e in only] == [e["id"] for e in changes]


def test_the_route_is_in_the_openapi_schema(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    route = paths[URL]["get"]
    assert {p["name"] for p in route["parameters"]} == {
        "camera", "zone", "from", "to", "limit", "cursor",
    }  # fmt: skip
    assert {"200", "401", "403", "404", "422"} <= set(route["responses"])
    assert route["tags"] == ["analytics"]
    assert route["summary"]
    [kind] = [p for p in paths["/v1/events"]["get"]["parameters"] if p["name"] == "kind"]
    assert "congestion" in str(kind["schema"])
