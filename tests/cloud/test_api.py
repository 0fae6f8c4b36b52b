"""The query API through real HTTP: a uvicorn server on port 0 over a filled SQLite catalog.

Every client here fails its test on any 500 (see ``api_fixtures.client``).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from cloud.api.auth import client_of
from cloud.api.errors import Forbidden, Unauthorized
from cloud.api.service import NO_ENCODER
from cloud.catalog import encode_cursor
from cloud.index.base import SearchFilter
from tests.cloud.api_fixtures import (
    BASE_US,
    SPACE_A,
    SPACE_B,
    SPACE_UNINDEXED,
    World,
    client,
    error_of,
    image_png,
)

PROTECTED: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/cameras", None),
    ("GET", "/v1/detections", None),
    ("GET", "/v1/detections/1", None),
    ("GET", "/v1/tracks/1", None),
    ("GET", "/v1/stats", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("POST", "/v1/search", {"detection_id": 1}),
    ("POST", "/v1/search/image", None),
]


def _request(
    c: httpx.Client, method: str, path: str, body: dict[str, Any] | None
) -> httpx.Response:
    if path == "/v1/search/image":
        return c.post(path, files={"image": ("x.png", image_png(1), "image/png")})
    return c.request(method, path, json=body)


def _png_b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- auth, health, errors


def test_health_needs_no_token(server: str) -> None:
    with client(server, token=None) as c:
        r = c.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "database": "ok",
        "details": {"index": "ready", "spaces": 2},
    }


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_other_endpoint_needs_a_token(
    server: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    with client(server, token=None) as c:
        r = _request(c, method, path, body)
        error_of(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        for header in ("Basic dXNlcjpwYXNz", "Bearer", "token-without-scheme"):
            r = c.request(method, path, headers={"Authorization": header})
            error_of(r, 401, "unauthorized")
    with client(server, token="not-the-token") as c:
        error_of(_request(c, method, path, body), 403, "forbidden")


def test_no_configured_token_refuses_everyone() -> None:
    with pytest.raises(Forbidden):
        client_of({}, "Bearer anything")
    with pytest.raises(Unauthorized):
        client_of({}, None)


def test_framework_errors_have_the_same_shape(api: httpx.Client) -> None:
    error_of(api.get("/v1/nothing-here"), 404, "not_found")
    error_of(api.delete("/v1/cameras"), 405, "method_not_allowed")
    json_type = {"Content-Type": "application/json"}
    message = error_of(api.post("/v1/search", content=b"{not json", headers=json_type), 422)
    assert "body" in message


def test_the_docs_need_a_token_unless_made_public(server: str, bare_server: str) -> None:
    with client(server) as c:
        assert c.get("/openapi.json").json()["info"]["title"].startswith("semcom cloud")
        error_of(c.get("/docs"), 404, "not_found")  # a browser could not send the token
        error_of(c.get("/redoc"), 404, "not_found")
    with client(bare_server, token=None) as c:
        assert c.get("/openapi.json").status_code == 200
        page = c.get("/docs")
        assert page.status_code == 200
        assert "/openapi.json" in page.text


def test_database_down_is_503_and_health_says_why(bare_server: str) -> None:
    with client(bare_server, token=None) as c:
        r = c.get("/healthz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unavailable"
        assert "OperationalError" in body["database"]
        assert "index probe exploded" in body["details"]["error"]
        assert c.get("/metrics").status_code == 200  # public here
    with client(bare_server) as c:
        r = c.get("/v1/cameras")
        error_of(r, 503, "unavailable")
        assert r.headers["Retry-After"]


def test_image_search_without_encoder_is_409(bare_server: str) -> None:
    with client(bare_server) as c:
        r = c.post("/v1/search", json={"image": _png_b64(image_png(1))})
        assert error_of(r, 409, "no_query_encoder") == NO_ENCODER
        r = c.post("/v1/search/image", files={"image": ("a.png", image_png(1), "image/png")})
        assert error_of(r, 409, "no_query_encoder") == NO_ENCODER


def test_openapi_documents_every_route_and_the_bearer_scheme(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    for _method, path, _body in PROTECTED:
        if path == "/openapi.json":
            continue  # the schema does not list itself
        route = path.replace("/1", "/{detection_id}") if "detections/" in path else path
        route = route.replace("tracks/1", "tracks/{track_id}")
        assert route in paths, route
    assert "security" not in paths["/healthz"]["get"]
    assert paths["/v1/cameras"]["get"]["security"] == [{"bearer": []}]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "ErrorResponse" in spec["components"]["schemas"]


# ---------------------------------------------------------------- catalog reads


def test_cameras_with_counts_and_times(api: httpx.Client, world: World) -> None:
    cameras = {c["id"]: c for c in api.get("/v1/cameras").json()["cameras"]}
    assert set(cameras) == {1, 2, 3, 4}
    for cam_id, cam in cameras.items():
        rows = [d for d in world.detections if d["camera_id"] == cam_id]
        assert cam["detections"] == len(rows)
        assert (cam["edge_id"], cam["name"]) == world.cameras[cam_id]
    assert cameras[4]["detections"] == 0
    assert cameras[4]["first_detection"] is None
    assert cameras[4]["last_detection"] is None
    assert cameras[2]["first_detection"] == "2026-11-24T10:00:00Z"
    assert cameras[3]["width"] is None
    assert cameras[1]["first_seen"] == "2026-11-24T09:59:00Z"


def _walk(api: httpx.Client, params: dict[str, Any], limit: int) -> list[int]:
    ids: list[int] = []
    cursor = None
    for _ in range(1000):
        more: dict[str, str] = {"cursor": cursor} if cursor else {}
        page = api.get("/v1/detections", params={**params, "limit": limit, **more})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit
        ids += [d["id"] for d in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
        assert len(body["items"]) == limit
    raise AssertionError("pagination did not end")


def test_pagination_walks_every_row_once_newest_first(api: httpx.Client, world: World) -> None:
    expected = world.expected_ids()
    assert len(expected) == len(world.detections)
    for limit in (1000, 7, 2):
        assert _walk(api, {}, limit) == expected
    first = api.get("/v1/detections", params={"limit": 3, "cursor": ""}).json()
    assert [d["id"] for d in first["items"]] == expected[:3]  # an empty cursor: the start


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"camera": [1, 3]}, SearchFilter(cameras=(1, 3))),
        ({"class": 2}, SearchFilter(classes=(2,))),
        ({"camera": 2, "class": [0, 7]}, SearchFilter(cameras=(2,), classes=(0, 7))),
        (
            {"from": "2026-11-24T10:00:10Z", "to": (BASE_US + 40_000_000) / 1e6},
            SearchFilter(from_us=BASE_US + 10_000_000, to_us=BASE_US + 40_000_000),
        ),
        ({"camera": 4}, SearchFilter(cameras=(4,))),
    ],
)
def test_filters(
    api: httpx.Client, world: World, params: dict[str, Any], where: SearchFilter
) -> None:
    expected = world.expected_ids(where)
    assert _walk(api, params, 9) == expected
    if where.cameras != (4,):
        assert expected, "a filter that matches nothing proves little"


@pytest.mark.parametrize(
    "start",
    [
        "2026-11-24T10:00:30Z",
        "2026-11-24T10:00:30+00:00",
        "2026-11-24T11:00:30+01:00",
        "2026-11-24T10:00:30",  # no offset: UTC
        "2026-11-24T10:00:30.000000Z",
        str((BASE_US + 30_000_000) // 1_000_000),
        f"{(BASE_US + 30_000_000) / 1e6:.6f}",
    ],
)
def test_times_are_iso_8601_or_unix_seconds(api: httpx.Client, world: World, start: str) -> None:
    body = api.get("/v1/detections", params={"from": start, "limit": 1000}).json()
    assert [d["id"] for d in body["items"]] == world.expected_ids(
        SearchFilter(from_us=BASE_US + 30_000_000)
    )


def test_extreme_but_valid_ids_are_not_found_not_errors(api: httpx.Client) -> None:
    top = 2**63 - 1
    body = api.get("/v1/detections", params={"camera": top, "class": 65535}).json()
    assert body == {"items": [], "next_cursor": None}
    error_of(api.get(f"/v1/detections/{top}"), 404, "not_found")
    error_of(api.get(f"/v1/tracks/{top}"), 404, "not_found")
    error_of(api.post("/v1/search", json={"detection_id": top}), 404, "not_found")
    far = encode_cursor(-(2**63) + 1, top)
    assert api.get("/v1/detections", params={"cursor": far}).json()["items"] == []


def test_empty_time_range_is_empty(api: httpx.Client) -> None:
    at = "2026-11-24T10:00:30Z"
    assert api.get("/v1/detections", params={"from": at, "to": at}).json() == {
        "items": [],
        "next_cursor": None,
    }


def test_detection_by_id(api: httpx.Client, world: World) -> None:
    row = world.detections[4]
    d = api.get(f"/v1/detections/{row['id']}").json()
    assert d["camera_id"] == row["camera_id"]
    assert d["camera"] == world.cameras[row["camera_id"]][1]
    assert d["class_id"] == row["class_id"]
    assert d["track_id"] == row["track_id"]
    assert d["confidence"] == pytest.approx(row["confidence"])
    assert d["box"] == pytest.approx({k: row[k] for k in ("x1", "y1", "x2", "y2")})
    assert d["time"] == "2026-11-24T10:00:01Z"
    assert d["embedding_space"] == world.embedded.get(row["id"])
    assert api.get(f"/v1/detections/{world.unembedded}").json()["embedding_space"] is None
    error_of(api.get("/v1/detections/999999"), 404, "not_found")


def test_track_with_its_detections(api: httpx.Client, world: World) -> None:
    ended = next(t for t in world.tracks.values() if t["ended"])
    body = api.get(f"/v1/tracks/{ended['id']}").json()
    mine = sorted(
        (d for d in world.detections if d["track_id"] == ended["id"]),
        key=lambda d: (d["ts_us"], d["id"]),
    )
    assert [d["id"] for d in body["detections"]] == [d["id"] for d in mine]
    assert body["detection_count"] == len(mine)
    assert body["ended"] is True
    assert body["class_votes"] == {"2": len(mine), "7": 1}
    assert body["path"][0] == {"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.4}
    assert body["frames"] == ended["frames"]
    open_track = next(t for t in world.tracks.values() if not t["ended"])
    body = api.get(f"/v1/tracks/{open_track['id']}").json()
    assert (body["class_votes"], body["path"], body["frames"]) == ({}, [], None)
    error_of(api.get("/v1/tracks/424242"), 404, "not_found")


def test_stats(api: httpx.Client, world: World) -> None:
    s = api.get("/v1/stats").json()
    assert (s["edges"], s["cameras"], s["tracks"]) == (2, 4, len(world.tracks))
    assert s["detections"] == len(world.detections)
    assert s["embeddings"] == len(world.embedded)
    assert s["journal_frames"] == 71
    if world.engine.dialect.name == "sqlite":
        assert s["database_bytes"] > 0
    else:
        assert s["database_bytes"] is None
    spaces = {x["name"]: x for x in s["spaces"]}
    assert spaces[SPACE_A]["random_init"] is True
    assert spaces[SPACE_B]["embeddings"] == sum(v == SPACE_B for v in world.embedded.values())
    edges = {e["id"]: e for e in s["per_edge"]}
    assert (edges["edge-a"]["watermark"], edges["edge-b"]["watermark"]) == (50, 20)
    assert edges["edge-b"]["last_capture"] == "2026-11-24T10:00:00.022000Z"  # seq 22, past the gap


# ---------------------------------------------------------------- bad parameters: 422


_BIG = str(2**63)


@pytest.mark.parametrize(
    ("path", "params", "names"),
    [
        ("/v1/detections", {"limit": 0}, "limit"),
        ("/v1/detections", {"limit": 1001}, "limit"),
        ("/v1/detections", {"limit": "ten"}, "limit"),
        ("/v1/detections", {"cursor": "not-a-cursor"}, "cursor"),
        ("/v1/detections", {"cursor": base64.urlsafe_b64encode(b"x:y").decode()}, "cursor"),
        ("/v1/detections", {"cursor": encode_cursor(10**20, 1)}, "cursor"),
        ("/v1/detections", {"cursor": "\u00e9t\u00e9"}, "cursor"),
        ("/v1/detections", {"camera": "x"}, "camera"),
        ("/v1/detections", {"camera": 0}, "camera"),
        ("/v1/detections", {"camera": _BIG}, "camera"),
        ("/v1/detections", {"class": -1}, "class"),
        ("/v1/detections", {"class": 70000}, "class"),
        ("/v1/detections", {"from": "yesterday"}, "from"),
        ("/v1/detections", {"from": "nan"}, "from"),
        ("/v1/detections", {"from": "1e400"}, "from"),
        ("/v1/detections", {"to": "2026-13-01T00:00:00Z"}, "to"),
        ("/v1/detections", {"from": "2026-11-25", "to": "2026-11-24"}, "to"),
        ("/v1/detections/0", {}, "detection_id"),
        ("/v1/detections/abc", {}, "detection_id"),
        (f"/v1/detections/{_BIG}", {}, "detection_id"),
        ("/v1/tracks/-1", {}, "track_id"),
    ],
)
def test_bad_query_parameters_are_422_naming_the_parameter(
    api: httpx.Client, path: str, params: dict[str, Any], names: str
) -> None:
    assert names in error_of(api.get(path, params=params), 422, "invalid_parameter")


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({}, "exactly one of detection_id and image"),
        ({"detection_id": 1, "image": "aGVsbG8="}, "exactly one of detection_id and image"),
        ({"image": None, "k": 5}, "exactly one of detection_id and image"),  # was a 500
        ({"detection_id": 0}, "detection_id"),
        ({"detection_id": 2**63}, "detection_id"),
        ({"detection_id": 1, "k": 0}, "k"),
        ({"detection_id": 1, "k": 101}, "k"),
        ({"detection_id": 1, "filter": {"from": "soon"}}, "filter.from"),
        ({"detection_id": 1, "filter": {"camera": ["a"]}}, "filter.camera[0]"),
        ({"detection_id": 1, "filter": {"from": 20, "to": 10}}, "to"),
        ({"detection_id": 1, "filter": {"from": True}}, "filter.from"),
        ({"detection_id": 1, "colour": "red"}, "colour"),
        ({"image": "!!! not base64 !!!"}, "base64"),
        ({"image": ""}, "image"),
        ({"image": _png_b64(b"hello, not an image")}, "image"),
        ({"image": _png_b64(image_png(3)[:60])}, "image"),  # truncated PNG
        ({"image": _png_b64(image_png(3)), "space": SPACE_B}, "space"),
    ],
)
def test_bad_search_requests_are_422(api: httpx.Client, body: dict[str, Any], names: str) -> None:
    assert names in error_of(api.post("/v1/search", json=body), 422)


def test_search_errors_name_the_cause(api: httpx.Client, world: World) -> None:
    r = api.post("/v1/search", json={"detection_id": world.unembedded})
    assert "has no embedding" in error_of(r, 422, "no_embedding")
    error_of(api.post("/v1/search", json={"detection_id": 999_999}), 404, "not_found")
    r = api.post("/v1/search", json={"detection_id": 1, "space": SPACE_B})
    assert "space" in error_of(r, 422, "invalid_parameter")
    r = api.post("/v1/search", json={"detection_id": 1000})  # its space has no index
    assert SPACE_UNINDEXED in error_of(r, 404, "unknown_space")
