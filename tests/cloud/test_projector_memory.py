"""Memory: the writer's track cache stays small (ended tracks keep no path or votes once
written), and the service exports its resident memory."""

from __future__ import annotations

from prometheus_client import generate_latest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from cloud.metrics import CloudMetrics
from cloud.schema import tracks
from cloud.session import EdgeSession
from cloud.store import Store
from shared.geometry import Box
from shared.messages import TrackEnd
from shared.vectors import CodecSet
from tests.cloud.test_store import BOX_A, T0, S, embedding, engine, env, hello, receive

__all__ = ["engine"]  # the fixture, imported for this module's tests

PATH = tuple(Box(0.01 * i, 0.01 * i, 0.01 * i + 0.1, 0.01 * i + 0.1) for i in range(32))


def test_ended_tracks_are_written_whole_and_cached_without_their_paths(engine: Engine) -> None:
    store = Store(engine, CodecSet())
    session = EdgeSession("edge-01", "s1", store)
    receive(session, hello())
    frames = []
    for track in range(1, 41):
        ts = T0 + track * S
        frames.append(env(2 * track - 1, ts, embedding(track, seed=track, box=BOX_A)))
        frames.append(
            env(2 * track, ts + S, TrackEnd("cam-a", track, ts, ts + S, 25, {2: 25}, PATH))
        )
    receive(session, *frames)
    # a second TrackEnd of the same track (resent under a new seq) is written again, whole
    receive(
        session,
        env(81, T0 + 2 * S, TrackEnd("cam-a", 1, T0 + S, T0 + 2 * S, 30, {7: 30}, PATH[:3])),
    )
    with engine.connect() as conn:
        rows = conn.execute(select(tracks.c.local_id, tracks.c.path, tracks.c.class_votes)).all()
    assert len(rows) == 40
    by_local = {r.local_id: r for r in rows}
    assert (len(by_local[2].path), by_local[2].class_votes) == (32, {"2": 25})
    assert (len(by_local[1].path), by_local[1].class_votes) == (3, {"7": 30})
    cached = list(store.projector.tracks.cached.values())
    assert len(cached) == 40
    assert all(st.ended for st in cached)
    assert all(st.path is None and st.votes is None for st in cached)


def test_metrics_export_the_resident_memory() -> None:
    text = generate_latest(CloudMetrics().registry).decode()
    rss = [line for line in text.splitlines() if line.startswith("process_resident_memory_bytes ")]
    assert len(rss) == 1
    assert float(rss[0].split()[1]) > 10e6
