"""The catalog ``semcom bench dashboard`` serves: N detections seeded before the cloud starts.

:func:`seed_catalog` makes the schema the way the cloud does (:func:`cloud.db.open_database`
runs the Alembic migrations) and fills it with bulk inserts, in seconds for 100k detections:

- two edges with two cameras each (1920x1080 and 1280x720, 10 fps);
- tracks of 5 to 15 detections (10 on average) on a random camera, started uniformly over
  the last ``hours`` (so the overview's last-hour chart has data), one box every 0.1-0.5 s
  moving in a straight line; each track's ``path`` (its sampled boxes) and ``class_votes``
  are set as a ``TrackEnd`` would set them; the class mix is traffic-like;
- an embedding for the first detection of every track (``FIRST_SIGHT``) and for one in nine
  of the others (``KEYFRAME``): about one detection in five. Vectors are synthetic (a class
  centroid plus a per-track direction plus per-sighting noise, unit-normalised, ``dim``-d)
  and stored encoded with the built-in f16 codec, with their ``spaces`` and ``codecs`` rows,
  as :class:`cloud.store.Store` registers them, so the cloud's indexer loads them at start;
- ``descriptions`` descriptions made by the cloud's rule-based describer
  (:class:`cloud.describe.rules.RulesDescriber`) from the seeded rows of the newest 60 s
  windows of each camera (:func:`cloud.describe.context.build_context`), stored with
  :func:`cloud.describe.store.insert_description` (the full-text index follows by trigger).

:func:`insert_live_track` adds one new track (a detection with its embedding) in its own
committed transaction, for the live feed's delay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.vectors import VectorCodec

ENCODER: Final = "bench-synthetic"
CODEC: Final = "f16"
EDGES: Final = ("bench-edge-1", "bench-edge-2")
CAMERAS: Final = (  # (edge index, name, width, height)
    (0, "north", 1920, 1080),
    (0, "south", 1280, 720),
    (1, "east", 1920, 1080),
    (1, "west", 1280, 720),
)
CLASSES: Final = np.array([2, 0, 7, 5, 1, 3])  # COCO car, person, truck, bus, bicycle, motorcycle
CLASS_SHARE: Final = np.array([0.60, 0.15, 0.08, 0.05, 0.07, 0.05])
BOX_SIZE: Final = {2: 0.12, 0: 0.05, 7: 0.2, 5: 0.22, 1: 0.06, 3: 0.07}  # width, image widths
WINDOW_US: Final = 60_000_000
CHUNK: Final = 20_000  # rows per insert
FIRST_SIGHT: Final = 1
KEYFRAME: Final = 3
SETTINGS: Final = (
    "2 edges, 4 cameras; tracks of 5-15 detections (10 on average) started uniformly over the "
    "last {hours:g} h, a box every 0.1-0.5 s on a straight line; class mix car 60 %, person "
    "15 %, truck 8 %, bus 5 %, bicycle 7 %, motorcycle 5 %; an embedding ({dim}-d synthetic, "
    "f16) for each track's first detection and one in nine of the others; rule-made "
    "descriptions of the newest 60 s windows of each camera"
)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as seeding goes (the CLI draws a bar)."""


@dataclass(frozen=True)
class SeedSpec:
    detections: int = 100_000
    descriptions: int = 500
    hours: float = 2.0
    dim: int = 384
    seed: int = 0

    def describe(self) -> str:
        return SETTINGS.format(hours=self.hours, dim=self.dim)


@dataclass(frozen=True)
class Seeded:
    """What was seeded, and what the benchmark's pages and live inserts need of it."""

    detections: int
    tracks: int
    embeddings: int
    descriptions: int
    now_us: int  # the seed's "now": detections end before it
    space_id: int
    codec_fp: int
    dim: int
    longest_track: int  # the track with the most detections (/tracks/<id>)
    embedded_detection: int  # a detection with an embedding (/explore?similar=<id>)
    next_seq: dict[str, int]  # per edge: the next journal seq a new detection takes
    seconds: float


def unit(x: NDArray[np.float64]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


@dataclass
class _Plan:
    """The seeded rows as columns (numpy), before they become inserts."""

    track_camera: NDArray[np.int64]
    track_class: NDArray[np.int64]
    track_size: NDArray[np.int64]
    det_track: NDArray[np.int64]  # 0-based track index per detection
    det_ts: NDArray[np.int64]
    det_box: NDArray[np.float64]  # (n, 4)
    det_conf: NDArray[np.float64]
    det_embedded: NDArray[np.bool_]
    det_first: NDArray[np.bool_]


def plan(spec: SeedSpec, now_us: int) -> _Plan:
    """Every track's and detection's columns, drawn from ``spec.seed``."""
    rng = np.random.default_rng(spec.seed)
    n = spec.detections
    sizes = rng.integers(5, 16, size=n // 5 + 1)
    ends = np.cumsum(sizes)
    t = int(np.searchsorted(ends, n)) + 1
    sizes = sizes[:t].copy()
    sizes[-1] -= int(ends[t - 1]) - n
    span_us = int(spec.hours * 3_600_000_000)
    starts = now_us - span_us + rng.integers(0, max(1, span_us - 60_000_000), size=t)
    step_us = rng.integers(100_000, 500_000, size=t)
    track_class = rng.choice(CLASSES, size=t, p=CLASS_SHARE)
    track_camera = rng.integers(0, len(CAMERAS), size=t)
    det_track = np.repeat(np.arange(t), sizes)
    first_of = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    k = np.arange(n) - first_of[det_track]  # sighting number within the track
    det_ts = starts[det_track] + k * step_us[det_track]
    size = np.array([BOX_SIZE[int(c)] for c in track_class])
    centre = rng.uniform(0.15, 0.85, size=(t, 2))
    velocity = rng.normal(0.0, 0.01, size=(t, 2))  # frame fractions per sighting
    c = np.clip(centre[det_track] + velocity[det_track] * k[:, None], 0.05, 0.95)
    half = (size[det_track] / 2)[:, None] * np.array([1.0, 1.6])  # taller than wide
    box = np.clip(np.hstack([c - half, c + half]), 0.0, 1.0)
    det_first = k == 0
    det_embedded = det_first | (rng.random(n) < 1 / 9)
    conf = rng.uniform(0.35, 0.95, size=n)
    return _Plan(
        track_camera, track_class, sizes, det_track, det_ts, box, conf, det_embedded, det_first
    )


def vectors(
    rng: np.random.Generator, classes: NDArray[np.int64], tracks: NDArray[np.int64], dim: int
) -> NDArray[np.float32]:
    """Unit vectors: class centroid + a per-track direction + per-sighting noise."""
    centroids = rng.normal(size=(int(CLASSES.max()) + 1, dim))
    own = np.random.default_rng(rng.integers(2**63)).normal(size=(int(tracks.max()) + 1, dim))
    x = centroids[classes] + 0.8 * own[tracks] + 0.3 * rng.normal(size=(len(tracks), dim))
    return unit(x)


def _register(conn: Any, spec: SeedSpec, codec: VectorCodec, now_us: int) -> tuple[int, int]:
    """Edges, cameras, the space and the codec, as a Hello registers them."""
    from cloud.schema import cameras, codecs, edges, spaces
    from cloud.store import space_name
    from shared.vectors import fingerprint

    for edge in EDGES:
        conn.execute(
            edges.insert().values(
                id=edge,
                software_version="bench",
                detector="bench-synthetic",
                encoder=ENCODER,
                embedding_dim=spec.dim,
                random_init_encoder=False,
                first_seen_us=now_us,
                last_seen_us=now_us,
            )
        )
    conn.execute(
        cameras.insert(),
        [
            {
                "id": i + 1,
                "edge_id": EDGES[e],
                "name": name,
                "width": w,
                "height": h,
                "fps": 10.0,
                "first_seen_us": now_us - int(spec.hours * 3.6e9),
            }
            for i, (e, name, w, h) in enumerate(CAMERAS)
        ],
    )
    name = space_name(ENCODER, spec.dim, False)
    space_id = conn.execute(
        spaces.insert()
        .values(name=name, encoder=ENCODER, dim=spec.dim, random_init=False)
        .returning(spaces.c.id)
    ).scalar_one()
    fp = fingerprint(codec)
    conn.execute(
        codecs.insert().values(
            fingerprint=fp, codec_id=codec.codec_id, content_hash=codec.content_hash, dim=spec.dim
        )
    )
    return int(space_id), fp


def _rows(**columns: list[Any]) -> list[dict[str, Any]]:
    """Rows (dicts) from equally long columns."""
    keys = list(columns)
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _insert_chunks(
    conn: Any, table: Any, rows: list[dict[str, Any]], stage: str, progress: Progress | None
) -> None:
    from cloud.schema import bulk_insert

    if progress is not None:
        progress(stage, 0, len(rows))
    for at in range(0, len(rows), CHUNK):
        bulk_insert(conn, table, rows[at : at + CHUNK])
        if progress is not None:
            progress(stage, min(at + CHUNK, len(rows)), len(rows))


def seed_catalog(url: str, spec: SeedSpec, progress: Progress | None = None) -> Seeded:
    """A new catalog at ``url`` holding ``spec``'s rows (see the module's docstring)."""
    from cloud.db import open_database
    from cloud.schema import detections, embeddings, tracks
    from shared.vectors import create_codec

    started = time.monotonic()
    now_us = time.time_ns() // 1000
    p = plan(spec, now_us)
    rng = np.random.default_rng(spec.seed + 1)
    codec = create_codec(CODEC, spec.dim)
    n, t = len(p.det_ts), len(p.track_size)
    det_ids = np.arange(1, n + 1)
    edge_of_camera = np.array([e for e, *_ in CAMERAS])
    det_camera = p.track_camera[p.det_track]
    det_edge = edge_of_camera[det_camera]
    seq = np.zeros(n, dtype=np.int64)  # per edge, in capture order
    next_seq: dict[str, int] = {}
    for e, edge in enumerate(EDGES):
        mine = np.flatnonzero(det_edge == e)
        order = mine[np.argsort(p.det_ts[mine], kind="stable")]
        seq[order] = np.arange(1, len(order) + 1)
        next_seq[edge] = len(order) + 1
    first = np.flatnonzero(p.det_first)
    last = np.append(first[1:], n) - 1
    engine = open_database(url)
    try:
        with engine.begin() as conn:
            space_id, fp = _register(conn, spec, codec, now_us)
            votes = [
                {str(c): s}
                for c, s in zip(p.track_class.tolist(), p.track_size.tolist(), strict=True)
            ]
            track_rows = _rows(
                id=list(range(1, t + 1)),
                camera_id=(p.track_camera + 1).tolist(),
                local_id=list(range(1, t + 1)),
                class_id=p.track_class.tolist(),
                first_seen_us=p.det_ts[first].tolist(),
                last_seen_us=p.det_ts[last].tolist(),
                frames=p.track_size.tolist(),
                ended=[True] * t,
                class_votes=votes,
                path=[
                    np.round(p.det_box[a : b + 1], 4).tolist()
                    for a, b in zip(first, last, strict=True)
                ],
            )
            if progress is not None:
                progress("tracks", 0, t)
            for at in range(0, t, CHUNK):  # JSON columns: the Core path
                conn.execute(tracks.insert(), track_rows[at : at + CHUNK])
                if progress is not None:
                    progress("tracks", min(at + CHUNK, t), t)
            cls = p.track_class[p.det_track]
            det_rows = _rows(
                id=det_ids.tolist(),
                camera_id=(det_camera + 1).tolist(),
                track_id=(p.det_track + 1).tolist(),
                ts_us=p.det_ts.tolist(),
                class_id=cls.tolist(),
                confidence=p.det_conf.tolist(),
                x1=p.det_box[:, 0].tolist(),
                y1=p.det_box[:, 1].tolist(),
                x2=p.det_box[:, 2].tolist(),
                y2=p.det_box[:, 3].tolist(),
                edge_id=[EDGES[e] for e in det_edge.tolist()],
                seq=seq.tolist(),
                has_embedding=p.det_embedded.tolist(),
            )
            _insert_chunks(conn, detections, det_rows, "detections", progress)
            emb = np.flatnonzero(p.det_embedded)
            codes = codec.encode(vectors(rng, cls[emb], p.det_track[emb], spec.dim))
            emb_rows = _rows(
                detection_id=det_ids[emb].tolist(),
                space_id=[space_id] * len(emb),
                codec=[fp] * len(emb),
                reason=np.where(p.det_first[emb], FIRST_SIGHT, KEYFRAME).tolist(),
                code=[c.tobytes() for c in codes],
            )
            _insert_chunks(conn, embeddings, emb_rows, "embeddings", progress)
        described = _describe(engine, spec, now_us, progress)
    finally:
        engine.dispose()
    longest = int(np.argmax(p.track_size))
    embedded_recent = emb[p.det_ts[emb] >= now_us - 3_600_000_000]
    pick = embedded_recent if len(embedded_recent) else emb
    return Seeded(
        detections=n,
        tracks=t,
        embeddings=len(emb),
        descriptions=described,
        now_us=now_us,
        space_id=space_id,
        codec_fp=fp,
        dim=spec.dim,
        longest_track=longest + 1,
        embedded_detection=int(det_ids[int(rng.choice(pick))]),
        next_seq=next_seq,
        seconds=round(time.monotonic() - started, 2),
    )


def _describe(engine: Engine, spec: SeedSpec, now_us: int, progress: Progress | None) -> int:
    """Rule-made descriptions of the newest windows of each camera; how many were stored."""
    from cloud.describe.base import RULES, Described, Usage
    from cloud.describe.context import ContextSettings, Window, build_context
    from cloud.describe.rules import RulesDescriber
    from cloud.describe.store import insert_description

    describer, settings = RulesDescriber(), ContextSettings()
    last_window = now_us - now_us % WINDOW_US
    windows = [
        Window(cam + 1, last_window - (back + 1) * WINDOW_US, last_window - back * WINDOW_US)
        for back in range(-(-spec.descriptions // len(CAMERAS)))
        for cam in range(len(CAMERAS))
    ][: spec.descriptions]
    made = []
    if progress is not None:
        progress("descriptions", 0, len(windows))
    for i, window in enumerate(windows):
        output = describer.describe_now(build_context(engine, window, settings))
        made.append((window, Described(output, RULES, Usage(), 1, ())))
        if progress is not None and ((i + 1) % 50 == 0 or i + 1 == len(windows)):
            progress("descriptions", i + 1, len(windows))
    with engine.begin() as conn:
        for window, described in made:
            insert_description(conn, window, described, now_us)
    return len(made)
