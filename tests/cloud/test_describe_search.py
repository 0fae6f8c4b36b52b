"""Stored descriptions: full-text search (SQLite FTS5, PostgreSQL tsvector) and the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import delete
from sqlalchemy.engine import Engine

from cloud import schema
from cloud.api.deps import ApiDeps
from cloud.catalog import Catalog
from cloud.db import open_database
from cloud.describe.base import Described, Usage
from cloud.describe.context import Window
from cloud.describe.schema import TrafficDescription
from cloud.describe.store import DescriptionStore, insert_description
from cloud.index.base import SearchFilter
from shared.vectors import CodecSet
from tests.cloud.api_fixtures import DIGESTS, ExactSearcher, LiveServer, client, error_of, make_app
from tests.cloud.describe_fixtures import T0, S, fill_scene, reply

MIN = 60 * S


def described(model: str = "rules", **changes: Any) -> Described:
    return Described(TrafficDescription.model_validate(reply(**changes)), model, Usage(), 1, ())


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """Camera 1 (north-gate) and 2 (bridge); three descriptions, ids 1-3."""
    e = open_database(database_url)
    fill_scene(e)
    with e.begin() as conn:
        conn.execute(
            schema.cameras.insert().values(id=2, edge_id="edge-a", name="bridge", first_seen_us=T0)
        )
        rows = [
            (Window(1, T0, T0 + MIN), described(
                "fake-vlm", summary="A red truck stopped in the right lane.",
                congestion="standstill",
                incidents=[{"kind": "stopped_vehicle", "description": "Truck blocking the lane.",
                            "track_ids": [2]}])),
            (Window(1, T0 + MIN, T0 + 2 * MIN, "first bus seen"), described(
                summary="Light traffic, cars moving freely.", incidents=[],
                counts={"person": 0, "bicycle": 0, "car": 4, "motorcycle": 0, "bus": 1,
                        "truck": 0, "other": 0})),
            (Window(2, T0, T0 + MIN), described(
                summary="Heavy traffic: a queue of trucks waits at the bridge.", congestion="heavy",
                incidents=[], counts={"person": 0, "bicycle": 0, "car": 0, "motorcycle": 0,
                                      "bus": 0, "truck": 5, "other": 0})),
        ]  # fmt: skip
        for window, d in rows:
            insert_description(conn, window, d, T0 + 3 * MIN)
    yield e
    e.dispose()


def ids(hits: list[tuple[float, Any]]) -> list[int]:
    return [d.id for _, d in hits]


def test_full_text_search_matches_every_word_stemmed(engine: Engine) -> None:
    store = DescriptionStore(engine)
    trucks = store.search("trucks", None, 10)
    assert sorted(ids(trucks)) == [1, 3]  # "truck" and "trucks" are one stem
    assert all(score > 0 for score, _ in trucks)
    assert ids(store.search("truck", SearchFilter(cameras=(1,)), 10)) == [1]
    assert ids(store.search("blocking lane", None, 10)) == [1]  # an incident's text
    assert ids(store.search("standstill", None, 10)) == [1]  # the congestion level
    assert ids(store.search("red bridge", None, 10)) == []  # every word must match
    assert ids(store.search("!!! ???", None, 10)) == []
    assert ids(store.search("traffic", SearchFilter(classes=(5,)), 10)) == [2]  # counted a bus
    assert ids(store.search("traffic", SearchFilter(classes=(7,)), 10)) == [3]
    assert sorted(ids(store.search("traffic", None, 10))) == [2, 3]
    assert len(store.search("traffic", None, 1)) == 1
    # windows overlapping [from, to)
    assert ids(store.search("truck", SearchFilter(from_us=T0 + MIN), 10)) == []
    assert ids(store.search("cars", SearchFilter(from_us=T0 + MIN), 10)) == [2]
    # the index follows deletes (retention) and updates
    with engine.begin() as conn:
        conn.execute(delete(schema.descriptions).where(schema.descriptions.c.id == 1))
        conn.execute(
            schema.descriptions.update()
            .where(schema.descriptions.c.id == 3)
            .values(summary="Quiet bridge.")
        )
    assert ids(store.search("blocking", None, 10)) == []
    assert ids(store.search("trucks", None, 10)) == []
    assert ids(store.search("quiet", None, 10)) == [3]


@pytest.fixture
def api(engine: Engine) -> Iterator[httpx.Client]:
    deps = ApiDeps(
        catalog=Catalog(engine),
        token_digests=DIGESTS,
        searcher=ExactSearcher(engine),
        codecs=CodecSet(),
        query_encoder=None,
        metrics_registry=CollectorRegistry(),
    )
    with LiveServer(make_app(deps)) as live, client(live.url) as c:
        yield c


def test_descriptions_endpoint_lists_pages_and_searches(api: httpx.Client) -> None:
    first = api.get("/v1/descriptions", params={"camera": 1, "limit": 1})
    assert first.status_code == 200
    page = first.json()
    [newest] = page["items"]
    assert newest["id"] == 2
    assert newest["rules"] is True
    assert newest["describer"] == "rules"
    assert newest["reason"] == "first bus seen"
    assert newest["counts"]["car"] == 4
    assert newest["start"] == "2026-11-24T10:01:00Z"
    second = api.get("/v1/descriptions", params={"camera": 1, "cursor": page["next_cursor"]})
    [older] = second.json()["items"]
    assert older["id"] == 1
    assert older["rules"] is False
    assert older["incidents"] == [
        {"kind": "stopped_vehicle", "description": "Truck blocking the lane.", "track_ids": [2]}
    ]
    assert second.json()["next_cursor"] is None
    window = api.get("/v1/descriptions", params={"from": "2026-11-24T10:01:00Z"}).json()
    assert [d["id"] for d in window["items"]] == [2]
    assert api.get("/v1/descriptions/3").json()["camera"] == "bridge"
    error_of(api.get("/v1/descriptions/99"), 404, "not_found")
    error_of(api.get("/v1/descriptions", params={"cursor": "bm9wZQ"}), 422, "invalid_parameter")
    error_of(api.get("/v1/descriptions", params={"from": 20, "to": 10}), 422)
    error_of(api.get("/v1/descriptions", params={"camera": 0}), 422)

    found = api.post("/v1/search", json={"text": "Trucks!", "k": 5, "filter": {"camera": [2]}})
    assert found.status_code == 200
    body = found.json()
    assert body["text"] == "Trucks!"
    assert [h["description"]["id"] for h in body["hits"]] == [3]
    assert body["hits"][0]["score"] > 0
    assert body["crops"] is None  # no text encoder here: descriptions only, and why
    assert body["crops_unavailable"]["code"] == "no_text_encoder"
    assert "open_clip" in body["crops_unavailable"]["message"]
    error_of(api.post("/v1/search", json={"text": "truck", "space": "x"}), 422)
    error_of(api.post("/v1/search", json={"text": "truck", "image": "aGVsbG8="}), 422)
    error_of(api.post("/v1/search", json={"text": ""}), 422)
    anonymous = httpx.post(f"{api.base_url}/v1/search", json={"text": "truck"})
    error_of(anonymous, 401)


def test_the_migration_indexes_the_document_the_queries_search() -> None:
    """PostgreSQL uses the GIN index only for the very expression it was built on."""
    import importlib.util
    from pathlib import Path

    from cloud.describe import fts

    path = Path(fts.__file__).parents[1] / "migrations" / "versions" / "0002_describer.py"
    spec = importlib.util.spec_from_file_location("migration_0002", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PG_DOCUMENT == fts.PG_DOCUMENT
