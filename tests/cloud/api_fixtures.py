"""Test material for the query API: a filled catalog, an exact searcher, a live server.

- :func:`build_world` fills a fresh catalog (``cloud.db.open_database``) with rows as the
  ingest writes them: two edges, four cameras (one without detections), two embedding spaces,
  tracks, detections with ties on the timestamp, embeddings with real ``f16`` / ``int8`` codes,
  journal frames with a gap; optionally detections embedded from two images by a
  :class:`~cloud.encoder.QueryEncoder`.
- :class:`ExactSearcher` is a brute-force test double of the index (the index has its own
  tests): it decodes every stored code and scores with numpy.
- :class:`LiveServer` runs an app with uvicorn on port 0 in a thread: real HTTP.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI
from numpy.typing import NDArray
from PIL import Image
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine

from cloud import schema
from cloud.api.deps import ApiDeps, ImageEncoder
from cloud.api.docs import APP_DOCS_OFF
from cloud.api.errors import install_error_handlers
from cloud.api.routes import build_api_router
from cloud.catalog import Catalog
from cloud.db import open_database
from cloud.index.base import Hit, SearchFilter
from shared.vectors import CodecSet, VectorCodec, create_codec, fingerprint
from tests.cloud.filtering import filter_mask

TOKEN = "query-token-1"
DIGESTS = {"dashboard": hashlib.sha256(TOKEN.encode()).digest()}
BASE_US = int(datetime(2026, 11, 24, 10, tzinfo=timezone.utc).timestamp()) * 1_000_000
SPACE_A = "vit_tiny_patch16_224-192-random-init"  # the query encoder's space in the tests
SPACE_B = "synthetic-64"
SPACE_UNINDEXED = "other-32"  # in the catalog, not in the searcher
N_DETECTIONS = 240


def image_png(seed: int, size: tuple[int, int] = (96, 64)) -> bytes:
    """A small PNG: a coloured block on a textured background (differs per seed)."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) // (2 + seed % 3)
    colour = rng.integers(0, 256, 3, dtype=np.uint8)
    pixels[height // 4 : 3 * height // 4, width // 5 : 4 * width // 5] = colour
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@dataclass
class World:
    """What was inserted, for the tests' expectations."""

    engine: Engine
    detections: list[dict[str, Any]] = field(default_factory=list)  # rows as inserted
    embedded: dict[int, str] = field(default_factory=dict)  # detection id -> space name
    cameras: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (edge, name)
    tracks: dict[int, dict[str, Any]] = field(default_factory=dict)
    image_detections: dict[int, bytes] = field(default_factory=dict)  # id -> PNG it embeds

    def expected_ids(self, where: SearchFilter | None = None) -> list[int]:
        """Detection ids the API should list, newest first, ties by id descending."""
        rows = [d for d in self.detections if _matches(d, where)]
        rows.sort(key=lambda d: (d["ts_us"], d["id"]), reverse=True)
        return [int(d["id"]) for d in rows]

    @property
    def unembedded(self) -> int:
        return next(int(d["id"]) for d in self.detections if not d["has_embedding"])


def _matches(row: dict[str, Any], where: SearchFilter | None) -> bool:
    if where is None:
        return True
    return (
        (where.cameras is None or row["camera_id"] in where.cameras)
        and (where.classes is None or row["class_id"] in where.classes)
        and (where.from_us is None or row["ts_us"] >= where.from_us)
        and (where.to_us is None or row["ts_us"] < where.to_us)
    )


def _unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), np.float32)


def build_world(url: str, encoder: ImageEncoder | None = None, seed: int = 7) -> World:
    """A catalog at ``url`` (an empty database) filled as described in the module docstring."""
    engine = open_database(url)
    world = World(engine)
    rng = np.random.default_rng(seed)
    f16, int8, f32 = create_codec("f16", 192), create_codec("int8", 64), create_codec("f32", 32)
    with engine.begin() as conn:
        for edge, dim in (("edge-a", 192), ("edge-b", 64)):
            conn.execute(
                schema.edges.insert().values(
                    id=edge,
                    software_version="0.1.0",
                    detector="yolo11n.pt",
                    encoder="vit_tiny_patch16_224" if dim == 192 else "synthetic",
                    embedding_dim=dim,
                    random_init_encoder=dim == 192,
                    first_seen_us=BASE_US - 60_000_000,
                    last_seen_us=BASE_US + 3_600_000_000,
                )
            )
        cams = [
            (1, "edge-a", "north-gate", 1280, 720, 25.0),
            (2, "edge-a", "south-gate", 1920, 1080, 30.0),
            (3, "edge-b", "bridge", None, None, None),
            (4, "edge-b", "idle", 640, 480, 10.0),
        ]
        for cam_id, edge, name, width, height, fps in cams:
            conn.execute(
                schema.cameras.insert().values(
                    id=cam_id,
                    edge_id=edge,
                    name=name,
                    width=width,
                    height=height,
                    fps=fps,
                    first_seen_us=BASE_US - 60_000_000,
                )
            )
            world.cameras[cam_id] = (edge, name)
        conn.execute(
            schema.spaces.insert(),
            [
                {"id": 1, "name": SPACE_A, "encoder": "vit_tiny_patch16_224", "dim": 192,
                 "random_init": True},
                {"id": 2, "name": SPACE_B, "encoder": "synthetic", "dim": 64,
                 "random_init": False},
                {"id": 3, "name": SPACE_UNINDEXED, "encoder": "other", "dim": 32,
                 "random_init": False},
            ],
        )  # fmt: skip
        conn.execute(
            schema.codecs.insert(),
            [
                {"fingerprint": fingerprint(c), "codec_id": c.codec_id,
                 "content_hash": c.content_hash, "dim": c.dim}
                for c in (f16, int8, f32)
            ],
        )  # fmt: skip
        detection_rows: list[dict[str, Any]] = []
        embedding_rows: list[dict[str, Any]] = []
        track_of: dict[tuple[int, int], int] = {}
        for i in range(N_DETECTIONS):
            cam = (1, 2, 3)[i % 3]
            ts = BASE_US + (i // 2) * 500_000  # pairs share a timestamp: ties in the order
            block = (cam, i // 24)
            track = None if i % 11 == 0 else track_of.setdefault(block, len(track_of) + 1)
            embedded = i % 4 != 3
            det_id = i + 1
            x1, y1 = float(rng.uniform(0, 0.8)), float(rng.uniform(0, 0.8))
            row = {
                "id": det_id,
                "camera_id": cam,
                "track_id": track,
                "ts_us": ts,
                "class_id": (0, 2, 2, 7, 3)[i % 5],
                "confidence": round(float(rng.uniform(0.3, 1.0)), 3),
                "x1": x1,
                "y1": y1,
                "x2": x1 + 0.1,
                "y2": y1 + 0.15,
                "edge_id": world.cameras[cam][0],
                "seq": i + 1,
                "has_embedding": embedded,
            }
            detection_rows.append(row)
            if embedded:
                space_id, codec = (2, int8) if cam == 3 else (1, f16)
                vector = _unit(rng.standard_normal((1, codec.dim)).astype(np.float32))
                embedding_rows.append(_embedding(det_id, space_id, codec, vector))
                world.embedded[det_id] = SPACE_B if cam == 3 else SPACE_A
        if encoder is not None:
            for n, seed_img in enumerate((101, 202)):
                det_id = N_DETECTIONS + 1 + n
                png = image_png(seed_img)
                vector = encoder.embed([Image.open(io.BytesIO(png))])
                detection_rows.append(
                    {**detection_rows[0], "id": det_id, "ts_us": BASE_US + 10**9 + n,
                     "track_id": None, "seq": det_id, "has_embedding": True}
                )  # fmt: skip
                embedding_rows.append(_embedding(det_id, 1, f16, vector))
                world.embedded[det_id] = SPACE_A
                world.image_detections[det_id] = png
        # one detection in a space the searcher does not hold
        unindexed = {**detection_rows[0], "id": 1000, "ts_us": BASE_US - 1, "seq": 1000,
                     "track_id": None}  # fmt: skip
        detection_rows.append(unindexed)
        vector = _unit(rng.standard_normal((1, 32)).astype(np.float32))
        embedding_rows.append(_embedding(1000, 3, f32, vector))
        world.embedded[1000] = SPACE_UNINDEXED
        for (cam_id, part), track_id in track_of.items():
            mine = [r for r in detection_rows if r["track_id"] == track_id]
            times = [int(r["ts_us"]) for r in mine]
            ended = part % 2 == 0
            track_row: dict[str, Any] = {
                "id": track_id,
                "camera_id": cam_id,
                "local_id": 100 + part,
                "class_id": 2,
                "first_seen_us": min(times),
                "last_seen_us": max(times),
                "frames": len(mine) * 3 if ended else None,
                "ended": ended,
                "class_votes": {"2": len(mine), "7": 1} if ended else None,
                "path": [[0.1, 0.2, 0.3, 0.4], [0.2, 0.2, 0.4, 0.4]] if ended else None,
            }
            conn.execute(schema.tracks.insert().values(**track_row))
            world.tracks[track_id] = track_row
        conn.execute(schema.detections.insert(), detection_rows)
        conn.execute(schema.embeddings.insert(), embedding_rows)
        _journal(conn)
    world.detections = detection_rows
    return world


def _embedding(
    det_id: int, space_id: int, codec: VectorCodec, vector: NDArray[np.float32]
) -> dict[str, Any]:
    return {
        "detection_id": det_id,
        "space_id": space_id,
        "codec": fingerprint(codec),
        "reason": 1,
        "code": codec.encode(vector).tobytes(),
    }


def _journal(conn: Any) -> None:
    """edge-a: seqs 1-50 (watermark 50); edge-b: 1-20 and 22 (a gap: watermark 20)."""
    frames = [("edge-a", s) for s in range(1, 51)] + [("edge-b", s) for s in (*range(1, 21), 22)]
    conn.execute(
        schema.journal_frames.insert(),
        [
            {"edge_id": e, "seq": s, "type": 3, "capture_ts_us": BASE_US + s * 1000,
             "received_us": BASE_US + s * 1000 + 40_000, "frame": b"\x00" * 8}
            for e, s in frames
        ],
    )  # fmt: skip
    conn.execute(
        schema.journal_watermarks.insert(),
        [{"edge_id": "edge-a", "watermark": 50}, {"edge_id": "edge-b", "watermark": 20}],
    )


@dataclass
class _Space:
    ids: NDArray[np.int64]
    vectors: NDArray[np.float32]
    cameras: NDArray[np.int64]
    classes: NDArray[np.int64]
    ts_us: NDArray[np.int64]


class ExactSearcher:
    """Brute-force cosine search over every stored embedding (a test double of the index).

    ``hold``, when set to an (unset) event, makes every search wait for it: a slow index.
    """

    def __init__(self, engine: Engine, spaces: Iterable[str] | None = None) -> None:
        codecs = CodecSet()
        query = (
            select(
                schema.spaces.c.name,
                schema.embeddings.c.detection_id,
                schema.embeddings.c.code,
                schema.codecs.c.codec_id,
                schema.codecs.c.content_hash,
                schema.codecs.c.dim,
                schema.detections.c.camera_id,
                schema.detections.c.class_id,
                schema.detections.c.ts_us,
            )
            .join_from(schema.embeddings, schema.spaces)
            .join(schema.codecs, schema.codecs.c.fingerprint == schema.embeddings.c.codec)
            .join(schema.detections, schema.detections.c.id == schema.embeddings.c.detection_id)
            .order_by(schema.embeddings.c.detection_id)
        )
        rows: dict[str, list[Any]] = {}
        with engine.connect() as conn:
            for r in conn.execute(query):
                rows.setdefault(r.name, []).append(r)
        wanted = set(rows) if spaces is None else set(spaces)
        self._spaces: dict[str, _Space] = {}
        for name, found in rows.items():
            if name not in wanted:
                continue
            vectors = np.concatenate(
                [codecs.accept(r.codec_id, r.content_hash, r.dim).decode(r.code) for r in found]
            )
            self._spaces[name] = _Space(
                np.array([r.detection_id for r in found], np.int64),
                _unit(vectors),
                np.array([r.camera_id for r in found], np.int64),
                np.array([r.class_id for r in found], np.int64),
                np.array([r.ts_us for r in found], np.int64),
            )
        self.hold: threading.Event | None = None
        self.calls = 0

    def spaces(self) -> list[str]:
        return sorted(self._spaces)

    def search(
        self, space: str, vectors: NDArray[np.float32], k: int, where: SearchFilter | None
    ) -> list[list[Hit]]:
        self.calls += 1
        if self.hold is not None:
            self.hold.wait(30)
        if space not in self._spaces:
            raise KeyError(space)
        s = self._spaces[space]
        mask = filter_mask(where, s.cameras, s.classes, s.ts_us)
        ids, scores = s.ids[mask], vectors @ s.vectors[mask].T
        out = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:k]
            out.append([Hit(int(ids[j]), float(row[j])) for j in best])
        return out


def make_app(deps: ApiDeps) -> FastAPI:
    """The API as the composition root wires it, without the ingest side."""
    app = FastAPI(title="semcom cloud (API tests)", **APP_DOCS_OFF)
    app.include_router(build_api_router(deps))
    install_error_handlers(app)
    return app


def make_deps(
    world: World,
    encoder: ImageEncoder | None,
    searcher: ExactSearcher | None = None,
    **overrides: Any,
) -> ApiDeps:
    values: dict[str, Any] = {
        "catalog": Catalog(world.engine),
        "token_digests": DIGESTS,
        "searcher": searcher or ExactSearcher(world.engine, [SPACE_A, SPACE_B]),
        "codecs": CodecSet(),
        "query_encoder": encoder,
        "metrics_registry": CollectorRegistry(),
        "health": lambda: {"index": "ready", "spaces": 2},
    }
    values.update(overrides)
    return ApiDeps(**values)


class LiveServer:
    """``app`` served by uvicorn on 127.0.0.1, port 0, in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", ws="none", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api-server", daemon=True)
        self.url = ""

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database on the test cluster (``postgres_server``) for one module's world."""
    name = f"api_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    finally:
        admin.dispose()


def _no_500(response: httpx.Response) -> None:
    assert response.status_code != 500, f"{response.request.url}: 500 {response.read()!r}"


def client(url: str, token: str | None = TOKEN) -> httpx.Client:
    """An HTTP client of the live server that fails any test receiving a 500."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=url, headers=headers, timeout=60, event_hooks={"response": [_no_500]}
    )


def error_of(response: httpx.Response, status: int, code: str | None = None) -> str:
    """Check the error shape; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return str(body["error"]["message"])
