"""Searches grouped by track ("where else is this object?") through real HTTP: a catalog on
SQLite and PostgreSQL, the cloud's real :class:`~cloud.indexer.Indexer` (faiss) filled from it
by a catch-up, and the query encoder (random-init ViT-Tiny: its scores mean nothing, but an
image embedded twice is the same vector) for image searches.

The vectors are laid out around one query direction with known cosines, so the expected hits
are known: the query's own track holds the 60 nearest vectors and another track the next 80.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from cloud import schema
from cloud.api.deps import ApiDeps
from cloud.api.grouping import MAX_CANDIDATES, Exclusion, nearest_groups
from cloud.catalog import Catalog
from cloud.catalog_records import DetectionRecord
from cloud.db import open_database
from cloud.encoder import QueryEncoder
from cloud.index.base import Hit, IndexSettings, SearchFilter
from cloud.indexer import Indexer
from cloud.metrics import CloudMetrics
from semcom.demo_client import CloudClient
from semcom.demo_query import search_section
from semcom.demo_summary import render_search
from shared.vectors import CodecSet, VectorCodec, create_codec, fingerprint
from tests.cloud.api_fixtures import (
    BASE_US,
    DIGESTS,
    TOKEN,
    LiveServer,
    client,
    error_of,
    image_png,
    make_app,
    postgres_database,
)

DIM = 32
SPACE = "synthetic-32"
STEP_US = 100_000
QUERY = 1  # the first sighting of track 1, the query direction itself
GAP = 0.002  # between neighbouring cosines: well above the index's rounding (float16, ~1e-4)


@dataclass(frozen=True)
class Sighting:
    id: int
    track: int | None
    camera: int
    class_id: int
    ts_us: int
    score: float | None  # cosine to the query direction (None: an image-space sighting)


def _layout() -> list[tuple[int | None, int, int, float]]:
    """(track, camera, class, cosine to the query) of every synthetic-space sighting."""
    rows: list[tuple[int | None, int, int, float]] = []
    rows += [(1, 1, 2, 1.0 - i * GAP) for i in range(60)]  # the own track, the query first
    rows += [(2, 1, 2, 0.87 - i * GAP) for i in range(80)]  # the next 80 nearest
    for t in range(3, 11):  # 8 tracks of 4 sightings, best first in time
        camera, class_id = (2, 2) if t % 2 else (1, 7)
        rows += [(t, camera, class_id, 0.7 - 0.04 * (t - 3) - 2 * GAP * j) for j in range(4)]
    rows += [(None, 2, 7, 0.69), (None, 2, 7, 0.1)]  # untracked
    return rows


def _vectors(scores: list[float], rng: np.random.Generator) -> NDArray[np.float32]:
    """Unit vectors with exactly these cosines to the first axis."""
    noise = rng.standard_normal((len(scores), DIM))
    noise[:, 0] = 0
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    s = np.asarray(scores)[:, None]
    out = np.sqrt(np.clip(1 - s**2, 0, None)) * noise
    out[:, 0] = s[:, 0]
    return np.asarray(out, np.float32)


def _embedding(det_id: int, space_id: int, codec: VectorCodec, v: NDArray[np.float32]) -> Any:
    code = codec.encode(v.reshape(1, -1)).tobytes()
    return {"detection_id": det_id, "space_id": space_id, "codec": fingerprint(codec),
            "reason": 1, "code": code}  # fmt: skip


def build(url: str, encoder: QueryEncoder) -> tuple[Engine, list[Sighting]]:
    """The catalog: the synthetic layout, then tracks 11 (3 sightings embedded from one image)
    and 12 (2 from another) in the query encoder's space."""
    engine = open_database(url)
    f32, image_codec = create_codec("f32", DIM), create_codec("f16", encoder.dim)
    layout = _layout()
    images = [(11, image_png(101))] * 3 + [(12, image_png(202))] * 2
    sightings = [
        Sighting(i + 1, t, cam, cls, BASE_US + i * STEP_US, score)
        for i, (t, cam, cls, score) in enumerate(layout)
    ]
    first = len(sightings) + 1
    sightings += [
        Sighting(first + j, t, 1, 2, BASE_US + (first + j) * STEP_US, None)
        for j, (t, _) in enumerate(images)
    ]
    vectors = _vectors([s for *_, s in layout], np.random.default_rng(5))
    embedded = encoder.embed([Image.open(io.BytesIO(png)) for _, png in images])
    with engine.begin() as conn:
        conn.execute(
            schema.edges.insert().values(
                id="edge-a", software_version="0.1.0", detector="yolo11n.pt",
                encoder="synthetic", embedding_dim=DIM, random_init_encoder=False,
                first_seen_us=BASE_US, last_seen_us=BASE_US,
            )
        )  # fmt: skip
        for cam in (1, 2):
            conn.execute(
                schema.cameras.insert().values(
                    id=cam, edge_id="edge-a", name=f"cam-{cam}", first_seen_us=BASE_US
                )
            )
        conn.execute(
            schema.spaces.insert(),
            [
                {"id": 1, "name": SPACE, "encoder": "synthetic", "dim": DIM,
                 "random_init": False},
                {"id": 2, "name": encoder.space, "encoder": encoder.name, "dim": encoder.dim,
                 "random_init": True},
            ],
        )  # fmt: skip
        conn.execute(
            schema.codecs.insert(),
            [
                {"fingerprint": fingerprint(c), "codec_id": c.codec_id,
                 "content_hash": c.content_hash, "dim": c.dim}
                for c in (f32, image_codec)
            ],
        )  # fmt: skip
        for t in sorted({s.track for s in sightings if s.track is not None}):
            mine = [s for s in sightings if s.track == t]
            conn.execute(
                schema.tracks.insert().values(
                    id=t, camera_id=mine[0].camera, local_id=100 + t, class_id=mine[0].class_id,
                    first_seen_us=mine[0].ts_us, last_seen_us=mine[-1].ts_us, ended=False,
                )
            )  # fmt: skip
        conn.execute(
            schema.detections.insert(),
            [
                {"id": s.id, "camera_id": s.camera, "track_id": s.track, "ts_us": s.ts_us,
                 "class_id": s.class_id, "confidence": 0.8, "x1": 0.1, "y1": 0.1, "x2": 0.2,
                 "y2": 0.3, "edge_id": "edge-a", "seq": s.id, "has_embedding": True}
                for s in sightings
            ],
        )  # fmt: skip
        rows = [_embedding(s.id, 1, f32, vectors[i]) for i, s in enumerate(sightings[: first - 1])]
        rows += [_embedding(first + j, 2, image_codec, embedded[j]) for j in range(len(images))]
        conn.execute(schema.embeddings.insert(), rows)
    return engine, sightings


@dataclass
class Served:
    url: str
    sightings: list[Sighting]

    def by_id(self, det_id: int) -> Sighting:
        return self.sightings[det_id - 1]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, encoder: QueryEncoder
) -> Iterator[Served]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('tracks') / 'c.db'}"
        yield from _serve(url, encoder)
        return
    with postgres_database(request.getfixturevalue("postgres_server")) as url:
        yield from _serve(url, encoder)


def _serve(url: str, encoder: QueryEncoder) -> Iterator[Served]:
    engine, sightings = build(url, encoder)
    indexer = Indexer(engine, CodecSet(), IndexSettings(), CloudMetrics(), 3600.0)
    assert indexer.catch_up() == len(sightings)
    deps = ApiDeps(
        catalog=Catalog(engine),
        token_digests=DIGESTS,
        searcher=indexer,
        codecs=CodecSet(),
        query_encoder=encoder,
        metrics_registry=CollectorRegistry(),
    )
    try:
        with LiveServer(make_app(deps)) as live:
            yield Served(live.url, sightings)
    finally:
        indexer.stop()
        engine.dispose()


@pytest.fixture
def api(served: Served) -> Iterator[httpx.Client]:
    with client(served.url) as c:
        yield c


def expected(
    served: Served, where: SearchFilter, k: int, exclude_track: int | None
) -> list[tuple[int | None, int, int]]:
    """(track, best sighting id, sightings) by brute force over the layout's known cosines."""
    groups: dict[tuple[str, int], list[Sighting]] = {}
    for s in served.sightings:
        if s.score is None or s.id == QUERY or (exclude_track and s.track == exclude_track):
            continue
        if where.cameras is not None and s.camera not in where.cameras:
            continue
        if where.classes is not None and s.class_id not in where.classes:
            continue
        if where.from_us is not None and s.ts_us < where.from_us:
            continue
        key = ("track", s.track) if s.track is not None else ("id", s.id)
        groups.setdefault(key, []).append(s)
    best = sorted(groups.values(), key=lambda g: -max(s.score or 0.0 for s in g))[:k]
    out = []
    for g in best:
        top = max(g, key=lambda s: s.score or 0.0)
        out.append((top.track, top.id, len(g)))
    return out


def summary(body: dict[str, Any]) -> list[tuple[int | None, int, int]]:
    return [(h["track_id"], h["detection"]["id"], h["sightings"]) for h in body["hits"]]


# ---------------------------------------------------------------- tests


def test_default_search_leaves_the_own_track_out_one_hit_per_track(
    api: httpx.Client, served: Served
) -> None:
    raw = api.post("/v1/search", json={"detection_id": QUERY, "k": 60, "group": "detection"})
    assert {h["track_id"] for h in raw.json()["hits"]} == {1}  # the own track is the nearest
    body = api.post("/v1/search", json={"detection_id": QUERY, "k": 5}).json()
    assert (body["group"], body["excluded_track"], body["excluded_detection"]) == ("track", 1, 1)
    assert (body["space"], body["random_init_encoder"]) == (SPACE, False)
    # The nearest 5 k = 25 candidates are all the own track, the next 80 one other track:
    # 5 distinct tracks need three rounds of fetching; the index had 174 vectors in all.
    assert body["candidates"] == 174
    assert [h["track_id"] for h in body["hits"]] == [2, 3, None, 4, 5]
    assert summary(body) == expected(served, SearchFilter(), 5, exclude_track=1)
    assert [h["sightings"] for h in body["hits"]] == [80, 4, 1, 4, 4]
    for hit in body["hits"]:
        best = served.by_id(hit["detection"]["id"])
        assert hit["detection"]["track_id"] == hit["track_id"] == best.track
        assert hit["score"] == pytest.approx(best.score, abs=GAP / 2)
        mates = [s.score or 0.0 for s in served.sightings if s.track == best.track]
        assert best.track is None or best.score == max(mates)


def test_raw_hits_include_the_own_track(api: httpx.Client) -> None:
    body = api.post("/v1/search", json={"detection_id": QUERY, "k": 10, "group": "detection"})
    body = body.json()
    assert (body["group"], body["excluded_track"], body["excluded_detection"]) == (
        "detection",
        None,
        None,
    )
    assert body["candidates"] == 10  # no grouping, no exclusion: no over-fetch
    assert [h["detection"]["id"] for h in body["hits"]] == list(range(1, 11))
    assert body["hits"][0]["score"] > 0.9999
    assert all(h["track_id"] == 1 and h["sightings"] == 1 for h in body["hits"])
    excluding = {"detection_id": QUERY, "k": 10, "group": "detection", "exclude_own_track": True}
    hits = api.post("/v1/search", json=excluding).json()["hits"]
    assert [h["detection"]["id"] for h in hits] == list(range(61, 71))  # track 2's, in order
    grouped = {"detection_id": QUERY, "k": 2, "exclude_own_track": False}
    body = api.post("/v1/search", json=grouped).json()
    assert body["excluded_track"] is None
    # Fetched 8, 32, then 128 candidates: 60 of track 1 and 68 of track 2's 80 sightings.
    assert body["candidates"] == 128
    assert summary(body) == [(1, QUERY, 60), (2, 61, 68)]


def test_filters_hold_with_grouping(api: httpx.Client, served: Served) -> None:
    body = api.post(
        "/v1/search", json={"detection_id": QUERY, "k": 4, "filter": {"camera": [2]}}
    ).json()
    assert [h["track_id"] for h in body["hits"]] == [3, None, 5, 7]
    assert all(h["detection"]["camera_id"] == 2 for h in body["hits"])
    assert summary(body) == expected(served, SearchFilter(cameras=(2,)), 4, exclude_track=1)
    # From the second sighting of track 4 on: its best left is that one, of 3 sightings.
    second = next(s for s in served.sightings if s.track == 4).id + 1
    since = served.by_id(second).ts_us
    frm = f"{np.datetime64(since, 'us')}Z"
    request = {"detection_id": QUERY, "k": 10, "filter": {"class": [7], "from": frm}}
    body = api.post("/v1/search", json=request).json()
    want = expected(served, SearchFilter(classes=(7,), from_us=since), 10, exclude_track=1)
    assert summary(body) == want
    assert (4, second, 3) in want
    assert len(want) == 6  # tracks 4, 6, 8, 10 and the two untracked: fewer than k exist
    assert all(h["detection"]["class_id"] == 7 for h in body["hits"])


def test_an_untracked_query_leaves_only_itself_out(api: httpx.Client, served: Served) -> None:
    untracked = next(s.id for s in served.sightings if s.track is None)
    body = api.post("/v1/search", json={"detection_id": untracked, "k": 8}).json()
    assert (body["excluded_track"], body["excluded_detection"]) == (None, untracked)
    assert untracked not in {h["detection"]["id"] for h in body["hits"]}
    tracks = [h["track_id"] for h in body["hits"] if h["track_id"] is not None]
    assert len(body["hits"]) == 8
    assert len(tracks) == len(set(tracks))
    raw = {"detection_id": untracked, "k": 1, "group": "detection"}
    assert api.post("/v1/search", json=raw).json()["hits"][0]["detection"]["id"] == untracked


def test_image_searches_group_by_track(api: httpx.Client, served: Served) -> None:
    png = image_png(101)
    files = {"image": ("q.png", png, "image/png")}
    body = api.post("/v1/search/image", files=files, data={"k": "2"}).json()
    assert body["random_init_encoder"] is True  # random weights: only identity is meaningful
    assert (body["group"], body["excluded_track"], body["excluded_detection"]) == (
        "track",
        None,
        None,
    )
    assert [(h["track_id"], h["sightings"]) for h in body["hits"]] == [(11, 3), (12, 2)]
    assert body["hits"][0]["score"] > 0.999
    raw = api.post("/v1/search/image", files=files, data={"k": "3", "group": "detection"})
    assert [h["track_id"] for h in raw.json()["hits"]] == [11, 11, 11]
    as_json = {"image": base64.b64encode(png).decode(), "k": 2}
    assert summary(api.post("/v1/search", json=as_json).json()) == summary(body)


def test_grouping_options_are_checked(api: httpx.Client) -> None:
    r = api.post("/v1/search", json={"detection_id": QUERY, "group": "camera"})
    assert "group" in error_of(r, 422)
    r = api.post("/v1/search", json={"text": "truck", "group": "track"})
    assert "group applies to detection_id and image searches" in error_of(r, 422)
    r = api.post("/v1/search", json={"image": "aGVsbG8=", "exclude_own_track": False})
    assert "exclude_own_track applies to detection_id searches" in error_of(r, 422)
    files = {"image": ("q.png", image_png(101), "image/png")}
    error_of(api.post("/v1/search/image", files=files, data={"group": "tracks"}), 422)
    spec = api.get("/openapi.json").json()["components"]["schemas"]
    assert "track" in spec["SearchRequest"]["properties"]["group"]["description"]
    assert set(spec["Hit"]["required"]) >= {"track_id", "sightings"}


def test_the_demo_search_names_class_track_and_encoder(served: Served) -> None:
    client = CloudClient(served.url, TOKEN)
    try:
        query = {"id": QUERY, "class_id": 2, "track_id": 1, "time": "2026-11-24T10:00:00Z"}
        names, encoders = {2: "car", 7: "truck"}, {SPACE: "synthetic"}
        section = search_section(client, query, names, encoders)
    finally:
        client.close()
    assert (section["group"], section["excluded_track"]) == ("track", 1)
    assert (section["encoder"], section["space"]) == ("synthetic", SPACE)
    hits = [(h["class"], h["track_id"], h["sightings"]) for h in section["hits"]]
    assert hits == [("car", 2, 80), ("car", 3, 4), ("truck", None, 1), ("truck", 4, 4),
                    ("car", 5, 4)]  # fmt: skip
    lines: list[str] = []
    render_search(section, lines.append)
    text = "\n".join(lines)
    assert "car, track 1, detection 1 (one hit per track, its own track 1 left out)" in text
    assert "encoder synthetic, space synthetic-32" in text
    assert "RANDOM-INIT" not in text
    assert "car          track 2       80 sighting(s), best: detection 61" in text
    assert "truck        untracked      1 sighting(s)" in text


def test_over_fetching_stops_at_the_cap() -> None:
    """A track of more than MAX_CANDIDATES sightings nearest the query: the search grows its
    fetch 4x per round and stops at the cap, with what it found."""
    n = MAX_CANDIDATES + 500
    asked: list[int] = []
    records = {
        i: DetectionRecord(i, 1, "cam", "edge", 7 if i <= MAX_CANDIDATES else i, i, 2, 0.9,
                           (0.1, 0.1, 0.2, 0.3), i, SPACE)
        for i in range(1, n + 1)
    }  # fmt: skip

    def fetch(k: int) -> list[Hit]:
        asked.append(k)
        return [Hit(i, 1.0 - i * 1e-6) for i in range(1, min(k, n) + 1)]

    def lookup(ids: Any) -> list[DetectionRecord]:
        return [records[i] for i in ids if i in records]

    found = nearest_groups(fetch, lookup, 5, "track", Exclusion(track_id=7))
    assert asked == [20, 80, 320, 1280, MAX_CANDIDATES]
    assert (found.hits, found.candidates) == ([], MAX_CANDIDATES)
    del asked[:]
    found = nearest_groups(fetch, lookup, 5, "track", Exclusion())
    assert asked == [20, 80, 320, 1280, MAX_CANDIDATES]
    assert [(h.detection.track_id, h.sightings) for h in found.hits] == [(7, MAX_CANDIDATES)]
