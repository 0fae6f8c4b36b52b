"""``GET /v1/edges`` and ``GET /v1/edges/{edge_id}``: each edge's link and health summary, from
a real :class:`~cloud.linkmon.LinkMonitor` fed as the ingest feeds it, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.api.deps import ApiDeps
from cloud.api.edges import build_edges_router
from cloud.catalog import Catalog
from cloud.db import open_database
from cloud.linkmon import LinkMonitor
from shared.messages import Heartbeat
from shared.vectors import CodecSet
from tests.cloud.api_fixtures import DIGESTS, TOKEN, ExactSearcher, LiveServer, client, make_app

T0 = 1_764_000_000_000_000
HEALTH = {"capture_fps": 25.0, "pipeline_fps": 24.5, "dropped": 7.0, "ack_ms_p95": 41.25}


class Clock:
    def __init__(self) -> None:
        self.us = T0

    def __call__(self) -> int:
        return self.us


@pytest.fixture
def monitor() -> LinkMonitor:
    clock = Clock()
    link = LinkMonitor(clock=clock)
    link.session_opened("edge-b", "s-1", "websocket")
    link.heartbeat("edge-b", Heartbeat(3, 2e5, 1, "int8", 4096, HEALTH))
    clock.us += 1_000_000
    link.session_opened("edge-a", "s-2", "webrtc")
    link.data("edge-a", 500, T0)
    link.session_closed("edge-a", "s-2")
    return link


@pytest.fixture
def url(tmp_path: Path, monitor: LinkMonitor) -> Iterator[str]:
    engine = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    deps = ApiDeps(
        catalog=Catalog(engine),
        token_digests=DIGESTS,
        searcher=ExactSearcher(engine, []),
        codecs=CodecSet(),
        query_encoder=None,
        metrics_registry=CollectorRegistry(),
        extra_routes=[partial(build_edges_router, monitor)],
    )
    with LiveServer(make_app(deps)) as live:
        yield live.url
    engine.dispose()


def test_every_edge_with_its_link_and_health(url: str) -> None:
    with client(url) as http:
        body = http.get("/v1/edges").raise_for_status().json()
    assert [e["edge_id"] for e in body["edges"]] == ["edge-a", "edge-b"]
    a, b = body["edges"]
    assert (a["connected"], a["transport"], a["health"], a["backlog"]) == (
        False,
        "webrtc",
        {},
        None,
    )
    assert a["last_heartbeat"] is None
    assert b["connected"] is True
    assert b["transport"] == "websocket"
    assert (b["backlog"], b["reconnects"], b["rung"], b["spool_bytes"]) == (3, 1, "int8", 4096)
    assert b["health"] == HEALTH  # float32-exact values come back as sent
    assert b["last_heartbeat"] == "2025-11-24T16:00:00Z"


def test_one_edge_and_the_errors(url: str) -> None:
    with client(url) as http:
        one = http.get("/v1/edges/edge-b").raise_for_status().json()
        assert one["health"]["dropped"] == 7.0
        missing = http.get("/v1/edges/edge-z")
        assert missing.status_code == 404
        assert "edge-z" in missing.json()["error"]["message"]
        assert http.get("/v1/edges/bad%20id").status_code == 422
    with client(url, token=None) as anonymous:
        assert anonymous.get("/v1/edges").status_code == 401
    with client(url, token="wrong") as stranger:
        assert stranger.get("/v1/edges/edge-b").status_code == 403


def test_the_routes_are_documented(url: str) -> None:
    schema = httpx.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert {"/v1/edges", "/v1/edges/{edge_id}"} <= set(schema["paths"])
    assert schema["paths"]["/v1/edges"]["get"]["security"] == [{"bearer": []}]
    status = schema["components"]["schemas"]["EdgeStatus"]
    assert "capture_fps" in status["properties"]["health"]["description"]
    assert status["properties"]["health"]["additionalProperties"] == {"type": "number"}
    responses = schema["paths"]["/v1/edges/{edge_id}"]["get"]["responses"]
    assert {"200", "401", "403", "404", "422"} <= set(responses)
