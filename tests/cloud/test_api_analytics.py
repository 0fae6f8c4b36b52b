"""The analytics routes over real HTTP, on SQLite and PostgreSQL: scenes (validation errors
that name the field, current, history), count series and events of a catalog whose traffic
went through the real ingest path and the runner (:func:`traffic_world`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from functools import partial
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from cloud.api.analytics import AnalyticsService, build_analytics_router
from cloud.api.deps import ApiDeps
from cloud.catalog import Catalog
from cloud.schema import analytics_events, cameras
from shared.vectors import CodecSet
from tests.cloud.analytics_fixtures import (
    CAR,
    EDGE,
    MINUTE,
    PERSON,
    SCENE,
    T0,
    TRUCK,
    S,
    traffic_world,
)
from tests.cloud.api_fixtures import (
    DIGESTS,
    ExactSearcher,
    LiveServer,
    client,
    error_of,
    make_app,
    postgres_database,
)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat().replace("+00:00", "Z")


def analytics_deps(engine: Engine) -> ApiDeps:
    return ApiDeps(
        catalog=Catalog(engine),
        token_digests=DIGESTS,
        searcher=ExactSearcher(engine, []),
        codecs=CodecSet(),
        query_encoder=None,
        metrics_registry=CollectorRegistry(),
        extra_routes=[partial(build_analytics_router, AnalyticsService(engine))],
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, int]]:
    if request.param == "sqlite":
        engine, camera = traffic_world(f"sqlite:///{tmp_path_factory.mktemp('a') / 'c.db'}")
        yield engine, camera
        engine.dispose()
        return
    with postgres_database(request.getfixturevalue("postgres_server")) as url:
        engine, camera = traffic_world(url)
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


@pytest.fixture
def blank_camera(world: tuple[Engine, int]) -> int:
    """A new camera of the edge, without a scene."""
    engine = world[0]
    with engine.begin() as conn:
        n = conn.execute(select(func.count()).select_from(cameras)).scalar_one()
        return int(
            conn.execute(
                cameras.insert()
                .values(edge_id=EDGE, name=f"blank-{n}", first_seen_us=T0)
                .returning(cameras.c.id)
            ).scalar_one()
        )


def without_line(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "line"}


def details(response: httpx.Response) -> dict[str, str]:
    error_of(response, 422, "invalid_parameter")
    return {d["location"]: d["message"] for d in response.json()["error"]["details"]}


# ------------------------------------------------------------------- scenes


def test_a_bad_scene_is_a_422_naming_each_field(api: httpx.Client, blank_camera: int) -> None:
    url = f"/v1/cameras/{blank_camera}/scene"
    bad = {
        "frame": {"width": 1280, "height": 720},
        "lines": {"gate": {"points": [[0.0, 0.5], [2.0, 0.5]]}},
        "zones": {"bow": {"polygon": [[0, 0], [1, 1], [0, 1], [1, 0]]}},
        "bogus": 1,
    }
    got = details(api.put(url, json=bad))
    assert set(got) == {"body.lines.gate.points[1][0]", "body.zones.bow.polygon", "body.bogus"}
    assert "less than or equal to 1" in got["body.lines.gate.points[1][0]"]
    assert "intersects itself" in got["body.zones.bow.polygon"]
    message = error_of(api.put(url, json={"lines": {}}), 422)
    assert "body.frame" in message
    error_of(api.put(url, json=[1, 2]), 422)
    error_of(api.put(url, content=b"{not json", headers={"content-type": "application/json"}), 422)
    lines = {f"l{i}": {"points": [[0, 0.5], [1, 0.5]]} for i in range(65)}
    assert "body.lines" in details(api.put(url, json={**SCENE, "lines": lines}))
    error_of(api.put("/v1/cameras/999999/scene", json=SCENE), 404, "not_found")
    error_of(api.get(url), 404, "not_found")  # nothing was stored
    error_of(httpx.put(f"{api.base_url}{url}", json=SCENE), 401, "unauthorized")


def test_scene_set_current_and_history(api: httpx.Client, blank_camera: int) -> None:
    url = f"/v1/cameras/{blank_camera}/scene"
    first = api.put(url, json=SCENE)
    assert first.status_code == 200
    body = first.json()
    assert body["changed"] is True
    assert body["camera_id"] == blank_camera
    assert body["scene"]["lines"]["gate"]["direction"] == "left_to_right"  # defaults filled
    again = api.put(url, json=SCENE).json()
    assert (again["changed"], again["version"]) == (False, body["version"])
    moved = {**SCENE, "lines": {"gate": {"points": [[0.0, 0.6], [1.0, 0.6]]}}}
    second = api.put(url, json=moved).json()
    assert second["changed"] is True
    assert second["version"] != body["version"]
    current = api.get(url).json()
    assert (current["version"], current["scene"]) == (second["version"], second["scene"])
    history = api.get(f"/v1/cameras/{blank_camera}/scenes").json()
    assert [s["version"] for s in history["items"]] == [second["version"], body["version"]]
    assert history["next_cursor"] is None
    page = api.get(f"/v1/cameras/{blank_camera}/scenes", params={"limit": 1}).json()
    assert [s["version"] for s in page["items"]] == [second["version"]]
    rest = api.get(
        f"/v1/cameras/{blank_camera}/scenes", params={"limit": 1, "cursor": page["next_cursor"]}
    ).json()
    assert [s["version"] for s in rest["items"]] == [body["version"]]
    assert rest["next_cursor"] is None
    error_of(api.get("/v1/cameras/999999/scenes"), 404)
    assert "cursor" in error_of(
        api.get(f"/v1/cameras/{blank_camera}/scenes", params={"cursor": "AAAA"}), 422
    )


# ------------------------------------------------------------------- counts


def test_counts_per_minute_direction_and_class(
    api: httpx.Client, world: tuple[Engine, int]
) -> None:
    camera = world[1]
    params: dict[str, Any] = {
        "camera": camera, "line": "gate", "bucket": "1m",
        "from": _iso(T0), "to": _iso(T0 + 4 * MINUTE),
    }  # fmt: skip
    body = api.get("/v1/analytics/counts", params=params).json()
    assert body["buckets"] == [_iso(T0 + i * MINUTE) for i in range(4)]
    assert body["bucket_s"] == 60
    series = {(s["class_id"], s["direction"]): s["counts"] for s in body["series"]}
    assert series == {
        (CAR, "in"): [2, 0, 0, 0],
        (CAR, "out"): [0, 1, 0, 2],
        (PERSON, "in"): [1, 0, 0, 0],
        (TRUCK, "in"): [0, 1, 0, 0],
    }
    assert body["totals"] == {"in": 4, "out": 3}
    assert {s["class_name"] for s in body["series"]} == {"car", "person", "truck"}
    cars = api.get("/v1/analytics/counts", params={**params, "class": [CAR]}).json()
    assert cars["totals"] == {"in": 2, "out": 3}
    # Buckets align to the epoch: a range starting mid-bucket starts at its bucket.
    shifted = api.get("/v1/analytics/counts", params={**params, "from": _iso(T0 + 30 * S)})
    assert shifted.json()["buckets"][0] == _iso(T0)
    lot = api.get(
        "/v1/analytics/counts", params={**without_line(params), "zone": "lot", "bucket": "2m"}
    ).json()
    assert [(s["class_id"], s["direction"], s["counts"]) for s in lot["series"]] == [
        (PERSON, "entry", [1, 0])
    ]
    assert (lot["line"], lot["zone"]) == (None, "lot")


def test_counts_parameters_are_checked(
    api: httpx.Client, world: tuple[Engine, int], blank_camera: int
) -> None:
    camera = world[1]
    base: dict[str, Any] = {"camera": camera, "line": "gate", "from": _iso(T0),
                            "to": _iso(T0 + 4 * MINUTE)}  # fmt: skip
    assert "bucket" in error_of(
        api.get(
            "/v1/analytics/counts", params={**base, "bucket": "1s", "from": _iso(T0 - 86400 * S)}
        ),
        422,
    )
    assert "bucket" in error_of(
        api.get("/v1/analytics/counts", params={**base, "bucket": "0s"}), 422
    )
    assert "query.bucket" in details(
        api.get("/v1/analytics/counts", params={**base, "bucket": "5 weeks"})
    )
    assert "line" in error_of(api.get("/v1/analytics/counts", params={**base, "zone": "lot"}), 422)
    assert "line" in error_of(api.get("/v1/analytics/counts", params=without_line(base)), 422)
    message = error_of(api.get("/v1/analytics/counts", params={**base, "line": "nope"}), 422)
    assert "'nope'" in message
    assert "gate" in message
    assert "from" in error_of(api.get("/v1/analytics/counts", params={**base, "to": _iso(T0)}), 422)
    error_of(api.get("/v1/analytics/counts", params={**base, "camera": blank_camera}), 404)
    error_of(api.get("/v1/analytics/counts", params={**base, "camera": 999999}), 404)
    assert "query.camera" in details(api.get("/v1/analytics/counts", params={"line": "gate"}))
    # defaults: the last 24 h up to now, 5-minute buckets
    recent = api.get("/v1/analytics/counts", params={"camera": camera, "line": "gate"}).json()
    assert len(recent["buckets"]) in (288, 289)
    assert recent["series"] == []


# ------------------------------------------------------------------- events


def test_events_newest_first_paged_and_filtered(
    api: httpx.Client, world: tuple[Engine, int]
) -> None:
    engine, camera = world
    with engine.connect() as conn:
        stored = conn.execute(
            select(analytics_events.c.id, analytics_events.c.kind)
            .where(analytics_events.c.kind != "speed")
            .order_by(analytics_events.c.at_us.desc(), analytics_events.c.id.desc())
        ).all()
    assert len(stored) == 7 + 2  # crossings, the person's zone entry and exit
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "camera": camera}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/events", params=params).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r.id for r in stored]
    crossings = api.get("/v1/events", params={"kind": "line_crossing", "limit": 100}).json()
    items = crossings["items"]
    assert len(items) == 7
    first = items[-1]
    assert (
        first["time"] == _iso(T0 + 3 * S)
        or abs(datetime.fromisoformat(first["time"]).timestamp() - (T0 + 3 * S) / 1e6) < 0.01
    )
    assert (first["subject"], first["ordinal"], first["direction"]) == ("gate", 0, "in")
    assert first["camera"] == "cam-a"
    speeds = api.get("/v1/events", params={"kind": "speed", "class": PERSON}).json()["items"]
    assert len(speeds) == 1
    assert speeds[0]["unit"] == "image_widths/s"
    assert speeds[0]["value"] > 0
    window = api.get(
        "/v1/events",
        params={
            "from": _iso(T0 + 3 * MINUTE),
            "to": _iso(T0 + 4 * MINUTE),
            "kind": "line_crossing",
        },
    ).json()
    assert [e["direction"] for e in window["items"]] == ["out", "out"]
    assert "cursor" in error_of(api.get("/v1/events", params={"cursor": "bm90LWEtY3Vyc29y"}), 422)
    assert "query.kind[0]" in details(api.get("/v1/events", params={"kind": "parade"}))
    assert "from" in error_of(api.get("/v1/events", params={"from": _iso(T0), "to": _iso(T0)}), 422)


def test_the_routes_are_in_the_openapi_schema(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/cameras/{camera_id}/scene"]) == {"get", "put"}
    for path in ("/v1/cameras/{camera_id}/scenes", "/v1/events", "/v1/analytics/counts"):
        assert "get" in paths[path]
    counts = paths["/v1/analytics/counts"]["get"]
    assert {p["name"] for p in counts["parameters"]} == {
        "camera", "line", "zone", "class", "from", "to", "bucket",
    }  # fmt: skip
    assert {"401", "403", "422"} <= set(counts["responses"])


def test_the_service_without_http(world: tuple[Engine, int]) -> None:
    """The service is usable without HTTP (the dashboard or the CLI may call it)."""
    service = AnalyticsService(world[0])
    page = service.events(None, [world[1]], None, None, None, 1000, None)
    assert len(page.items) == 9
    assert service.scene(world[1]).version == page.items[0].scene_version
