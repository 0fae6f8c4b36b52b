"""A track-level stream (TrackSummary, protocol 4) in the catalog, on SQLite and PostgreSQL:
tracks and flagged path points written once, paths redrawn by interpolation, objects in view
derived from tracks, and the analytics counting from path points alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from cloud.analytics.config import AnalyticsConfig
from cloud.analytics.metrics import AnalyticsMetrics
from cloud.analytics.runner import AnalyticsRunner
from cloud.analytics.scenes import put_scene, validate_scene
from cloud.catalog import Catalog
from cloud.catalog_paths import TooManyBoxes, objects_in_view, track_path
from cloud.db import open_database
from cloud.schema import analytics_events, cameras, detections, tracks
from cloud.session import EdgeSession
from cloud.store import Store
from shared.codec import decode, encode
from shared.framing import pack_batch
from shared.geometry import Box
from shared.messages import Envelope, Message, TrackSummary
from shared.pathwire import PathPoint, TrackPath
from shared.vectors import CodecSet
from tests.cloud import analytics_fixtures as road
from tests.cloud.test_store import BOX_A, T0, S, embedding, hello

MS = 1000


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


def env(seq: int, ts: int, message: Message) -> bytes:
    return encode(Envelope("edge-01", seq, ts, ts, message))


def receive(session: EdgeSession, *frames: bytes) -> None:
    for reply in session.receive(pack_batch(frames)):
        decode(reply)


def summary(
    track: int,
    first: int,
    last: int,
    points: list[tuple[int, Box]],
    final: bool,
    frames: int = 100,
) -> TrackSummary:
    path = TrackPath(1, tuple(PathPoint(ms, box) for ms, box in points))
    return TrackSummary("cam-a", track, first, last, frames, {2: frames - 5, 7: 5}, final, path)


def box_x(x: float) -> Box:
    return Box(x, 0.4, x + 0.1, 0.5)


def path_points(engine: Engine) -> list[tuple[int, float]]:
    with engine.connect() as conn:
        q = select(detections.c.ts_us, detections.c.x1).where(detections.c.path_point)
        return [(int(t), float(x)) for t, x in conn.execute(q.order_by(detections.c.ts_us))]


def test_summaries_become_one_track_and_path_points_once(engine: Engine) -> None:
    session = EdgeSession("edge-01", "s1", Store(engine, CodecSet()))
    receive(session, hello())
    first, mid, last = T0, T0 + 2 * S, T0 + 4 * S
    keyframe = summary(3, first, mid, [(0, box_x(0.1)), (2000, box_x(0.3))], False, frames=50)
    final = summary(3, first, last, [(3000, box_x(0.3)), (4000, box_x(0.5))], True, frames=100)
    receive(
        session,
        env(1, T0 + 80 * MS, embedding(3, seed=1, box=BOX_A)),  # the announcement
        env(2, mid, keyframe),
    )
    receive(session, env(3, last, final))
    receive(session, env(3, last, final), env(9, last, final))  # a repeat; the same, resent
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                tracks.c.id,
                tracks.c.first_seen_us,
                tracks.c.last_seen_us,
                tracks.c.frames,
                tracks.c.ended,
                tracks.c.class_id,
                tracks.c.class_votes,
            )
        ).all()
        per_track = conn.execute(select(func.count()).select_from(detections)).scalar_one()
    assert len(rows) == 1  # the embedding's track, continued by both summaries
    t = rows[0]
    assert (t.first_seen_us, t.last_seen_us, t.frames, t.ended, t.class_id) == (
        first,
        last,
        100,
        True,
        2,
    )
    assert {int(k): v for k, v in t.class_votes.items()} == {2: 95, 7: 5}
    points = path_points(engine)
    assert [t for t, _ in points] == [first, T0 + 2 * S, T0 + 3 * S, T0 + 4 * S]
    assert [round(x, 4) for _, x in points] == [0.1, 0.3, 0.3, 0.5]
    assert per_track == 5  # four path points and the embedding's sighting

    found = Catalog(engine).track(t.id)
    assert found is not None
    assert [d.path_point for d in found.detections] == [True, False, True, True, True]
    assert found.detections[0].confidence == 0.0  # path points carry no detector confidence
    assert [round(b[0], 4) for b in found.path] == [0.1, 0.3, 0.3, 0.5]  # its points


def test_track_path_interpolates_between_points(engine: Engine) -> None:
    session = EdgeSession("edge-01", "s1", Store(engine, CodecSet()))
    receive(session, hello())
    receive(
        session, env(1, T0 + S, summary(5, T0, T0 + S, [(0, box_x(0.1)), (1000, box_x(0.5))], True))
    )
    with engine.connect() as conn:
        track_id = int(conn.execute(select(tracks.c.id)).scalar_one())
        got = track_path(conn, track_id, 250 * MS)
        assert track_path(conn, track_id + 1, 250 * MS) is None
        with pytest.raises(TooManyBoxes, match="exceeds max of 10000"):
            track_path(conn, track_id, 1)
    assert got is not None
    assert [(b.ts_us - T0, b.interpolated) for b in got] == [
        (0, False),
        (250_000, True),
        (500_000, True),
        (750_000, True),
        (1_000_000, False),
    ]
    assert [round(b.box[0], 4) for b in got] == [0.1, 0.2, 0.3, 0.4, 0.5]  # linear in time


def test_objects_in_view_from_tracks(engine: Engine) -> None:
    session = EdgeSession("edge-01", "s1", Store(engine, CodecSet()))
    receive(session, hello())
    one = summary(1, T0, T0 + 10 * S, [(0, box_x(0.1))], True)  # a car, 0-10 s
    two = summary(2, T0 + 5 * S, T0 + 15 * S, [(0, box_x(0.2))], True)  # a car, 5-15 s
    truck = TrackSummary("cam-a", 3, T0, T0 + 20 * S, 500, {7: 500}, True, TrackPath(1, ()))
    receive(session, env(1, T0, one), env(2, T0, two), env(3, T0, truck))
    with engine.connect() as conn:
        cam = int(conn.execute(select(cameras.c.id)).scalar_one())
        windows = objects_in_view(conn, [cam], T0, T0 + 20 * S, 10 * S)
        assert objects_in_view(conn, [cam + 1], T0, T0 + 20 * S, 10 * S)[0].classes == {}
    # 0-10 s: car 1 all of it (1), car 2 half (0.5); the truck all; 10-20 s: car 2 half
    assert [(w.start_us - T0, w.end_us - T0, w.classes) for w in windows] == [
        (0, 10 * S, {2: 1.5, 7: 1.0}),
        (10 * S, 20 * S, {2: 0.5, 7: 1.0}),
    ]


def test_a_summary_only_stream_crossing_a_line_counts_once(engine: Engine) -> None:
    store = Store(engine, CodecSet())
    road.ingest(store, [])  # the Hello
    with engine.connect() as conn:
        cam = int(conn.execute(select(cameras.c.id)).scalar_one())
    put_scene(engine, cam, validate_scene(road.SCENE), 1)
    # A car driving straight down across the gate (y = 0.5) in 6 s: its simplified path is
    # its two ends, the only sightings the catalog gets.
    start, end = road.box_at(0.3, 0.2), road.box_at(0.3, 0.8)
    car = TrackSummary(
        road.CAMERA,
        1,
        road.T0,
        road.T0 + 6 * S,
        150,
        {road.CAR: 150},
        True,
        TrackPath(16, (PathPoint(0, start), PathPoint(6000, end))),
    )
    road.ingest(store, [encode(Envelope(road.EDGE, 1, road.T0 + 6 * S, road.T0 + 6 * S, car))])
    runner = AnalyticsRunner(engine, AnalyticsConfig(), AnalyticsMetrics(CollectorRegistry()))
    assert runner.run_once().analysed == 1
    with engine.connect() as conn:
        kinds = Counter(
            (e.kind, e.direction, e.class_id) for e in conn.execute(select(analytics_events))
        )
    assert kinds[("line_crossing", "in", road.CAR)] == 1
    assert sum(n for (kind, _, _), n in kinds.items() if kind == "line_crossing") == 1
