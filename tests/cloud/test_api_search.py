"""Search and metrics of the query API through real HTTP (fixtures in conftest.py)."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
import pytest
from PIL import Image

from cloud.catalog import decode_cursor, encode_cursor
from cloud.catalog_records import InvalidCursor
from cloud.index.base import SearchFilter
from tests.cloud.api_fixtures import (
    BASE_US,
    SPACE_A,
    ExactSearcher,
    World,
    client,
    error_of,
)

# ---------------------------------------------------------------- search


def test_search_by_detection_finds_itself_first(api: httpx.Client, world: World) -> None:
    for det_id, min_score in ((1, 0.999), (3, 0.99)):  # f16 and int8 codes
        request = {"detection_id": det_id, "k": 5, "group": "detection"}  # raw: itself included
        body = api.post("/v1/search", json=request).json()
        assert body["space"] == world.embedded[det_id]
        assert body["random_init_encoder"] is (body["space"] == SPACE_A)
        hits = body["hits"]
        assert len(hits) == 5
        assert hits[0]["detection"]["id"] == det_id
        assert hits[0]["score"] > min_score
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(world.embedded[h["detection"]["id"]] == body["space"] for h in hits)


def test_search_filters_hold_for_every_hit(api: httpx.Client, world: World) -> None:
    request = {
        "detection_id": 1,
        "k": 100,
        "filter": {"camera": [2], "class": [2, 7], "from": "2026-11-24T10:00:05Z"},
        "group": "detection",
    }
    body = api.post("/v1/search", json=request).json()
    where = SearchFilter(cameras=(2,), classes=(2, 7), from_us=BASE_US + 5_000_000)
    matching = {i for i in world.expected_ids(where) if world.embedded.get(i) == SPACE_A}
    assert {h["detection"]["id"] for h in body["hits"]} == matching
    assert 1 not in matching
    empty = api.post("/v1/search", json={"detection_id": 1, "filter": {"camera": []}}).json()
    assert empty["hits"] == []  # an empty list matches nothing (the index's rule)


def test_search_by_uploaded_image_finds_the_detection_embedded_from_it(
    api: httpx.Client, world: World
) -> None:
    (first, png), (second, _) = sorted(world.image_detections.items())
    body = api.post("/v1/search", json={"image": base64.b64encode(png).decode(), "k": 3}).json()
    assert (body["space"], body["random_init_encoder"]) == (SPACE_A, True)
    assert body["hits"][0]["detection"]["id"] == first
    assert body["hits"][0]["score"] > 0.999
    assert body["hits"][1]["detection"]["id"] == second
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    again = api.post("/v1/search", json={"image": data_url, "k": 1}).json()
    assert again["hits"][0]["detection"]["id"] == first
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png)).save(jpeg, format="JPEG", quality=95)
    r = api.post("/v1/search/image", files={"image": ("q.jpg", jpeg.getvalue(), "image/jpeg")})
    assert r.json()["hits"][0]["detection"]["id"] == first


def test_multipart_image_search(api: httpx.Client, world: World) -> None:
    (_, _), (second, png) = sorted(world.image_detections.items())
    files = {"image": ("q.png", png, "image/png")}
    body = api.post("/v1/search/image", files=files, data={"k": "2"}).json()
    assert body["hits"][0]["detection"]["id"] == second
    assert len(body["hits"]) == 2
    body = api.post("/v1/search/image", files=files, data={"class": ["7"], "k": "50"}).json()
    assert body["hits"]
    assert all(h["detection"]["class_id"] == 7 for h in body["hits"])
    r = api.post("/v1/search/image", files=files, data={"from": "later"})
    assert "from" in error_of(r, 422, "invalid_parameter")
    error_of(api.post("/v1/search/image", files=files, data={"k": "0"}), 422)
    error_of(api.post("/v1/search/image", data={"k": "3"}), 422)
    garbage = {"image": ("q.png", b"\x89PNG garbage", "image/png")}
    error_of(api.post("/v1/search/image", files=garbage), 422, "invalid_image")


def test_a_slow_search_does_not_block_other_requests(server: str, searcher: ExactSearcher) -> None:
    searcher.hold = threading.Event()
    calls = searcher.calls
    result: dict[str, int] = {}

    def slow() -> None:
        with client(server) as c:
            result["status"] = c.post("/v1/search", json={"detection_id": 1}).status_code

    thread = threading.Thread(target=slow)
    try:
        thread.start()
        deadline = time.monotonic() + 10
        while searcher.calls == calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert searcher.calls > calls, "the search never reached the index"
        with client(server) as c:
            started = time.monotonic()
            assert c.get("/healthz", timeout=5).status_code == 200
            assert c.get("/v1/cameras", timeout=5).status_code == 200
            assert time.monotonic() - started < 5
        assert thread.is_alive(), "the search should still be waiting for the index"
    finally:
        searcher.hold.set()
        thread.join(30)
        searcher.hold = None
    assert result == {"status": 200}


# ---------------------------------------------------------------- metrics


def test_metrics_count_queries_by_route(api: httpx.Client) -> None:
    api.get("/v1/cameras")
    api.get("/v1/detections", params={"limit": 0})
    api.get("/v1/tracks/1")
    text = api.get("/metrics").text
    assert 'semcom_query_seconds_count{route="/v1/cameras"}' in text
    assert 'semcom_api_requests_total{route="/v1/detections",status="422"}' in text
    assert 'semcom_api_requests_total{route="/v1/tracks/{track_id}"' in text
    assert "semcom_api_auth_failures_total" in text


def test_catalog_rejects_foreign_cursors() -> None:
    assert decode_cursor(encode_cursor(-5, 7)) == (-5, 7)
    for bad in ("", "====", encode_cursor(1, 2) + "!", base64.b64encode(b"1:2:3").decode()):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)
