"""Catalog writes on SQLite and a real PostgreSQL: messages in, rows out, each exactly once."""

from __future__ import annotations

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from cloud import journal
from cloud.db import open_database
from cloud.describe.fts import include_object
from cloud.metrics import CloudMetrics
from cloud.retention import Retention
from cloud.schema import (
    cameras,
    codecs,
    detections,
    edges,
    embeddings,
    frame_counts,
    metadata,
    spaces,
    tracks,
)
from cloud.session import EdgeSession
from cloud.store import Store, space_name
from shared.codec import decode, encode
from shared.framing import pack_batch
from shared.geometry import Box
from shared.messages import (
    Ack,
    CameraInfo,
    CodecRef,
    Detections,
    Embedding,
    EmitReason,
    Envelope,
    FrameCounts,
    Hello,
    Message,
    TrackEnd,
)
from shared.vectors import CodecSet, create_codec, fingerprint

DIM = 32
F16 = create_codec("f16", DIM)
INT8 = create_codec("int8", DIM)
T0 = 1_700_000_000_000_000  # capture times (us)
S = 1_000_000


def env(seq: int, ts: int, message: Message) -> bytes:
    return encode(Envelope("edge-01", seq, ts, ts, message))


def hello() -> bytes:
    msg = Hello(
        "0.1.0",
        "yolo11n",
        "vit_test",
        DIM,
        (CodecRef("f16", F16.content_hash), CodecRef("int8", INT8.content_hash)),
        (CameraInfo("cam-a", 1280, 720, 25.0),),
        False,
    )
    return env(0, T0, msg)


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def embedding(track: int, seed: int, box: Box, codec: object = INT8) -> Embedding:
    return Embedding(
        "cam-a",
        track,
        EmitReason.FIRST_SIGHT,
        2,
        0.8,
        box,
        fingerprint(codec),  # type: ignore[arg-type]
        codec.encode(vec(seed)).tobytes(),  # type: ignore[attr-defined]
    )


def boxes(*tracked: tuple[int, Box]) -> Detections:
    return Detections(
        "cam-a",
        tuple(b for _, b in tracked),
        tuple(2 for _ in tracked),
        tuple(0.7 for _ in tracked),
        tuple(t for t, _ in tracked),
    )


BOX_A = Box(0.1, 0.1, 0.2, 0.3)
BOX_B = Box(0.5, 0.5, 0.6, 0.7)


@pytest.fixture
def engine(database_url: str) -> Engine:
    e = open_database(database_url)
    yield e  # type: ignore[misc]
    e.dispose()


def receive(session: EdgeSession, *frames: bytes) -> list[Message]:
    return [decode(r).message for r in session.receive(pack_batch(frames))]


def count(engine: Engine, table: object, *where: object) -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(table)  # type: ignore[arg-type]
        return int(conn.execute(q.where(*where) if where else q).scalar_one())


def test_migrations_build_exactly_the_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_hello_registers_edge_camera_space_and_codecs(engine: Engine) -> None:
    store = Store(engine, CodecSet())
    session = EdgeSession("edge-01", "s1", store)
    receive(session, hello())
    receive(EdgeSession("edge-01", "s2", store), hello())  # again: no second row
    with engine.connect() as conn:
        assert conn.execute(select(edges.c.encoder)).scalars().all() == ["vit_test"]
        cams = conn.execute(select(cameras.c.name, cameras.c.width, cameras.c.fps)).all()
        assert [tuple(c) for c in cams] == [("cam-a", 1280, 25.0)]
        assert conn.execute(select(spaces.c.name)).scalars().all() == [
            space_name("vit_test", DIM, False)
        ]
        assert sorted(conn.execute(select(codecs.c.codec_id)).scalars()) == ["f16", "int8"]


def test_messages_become_rows_once_whatever_the_order(engine: Engine) -> None:
    store = Store(engine, CodecSet())
    session = EdgeSession("edge-01", "s1", store)
    receive(session, hello())
    t1, t2 = T0 + 1 * S, T0 + 2 * S
    batch = [
        env(1, t1, embedding(3, seed=1, box=BOX_A)),  # first sighting of track 3
        env(2, t1, boxes((3, BOX_A), (4, BOX_B), (0, BOX_B))),  # same frame: 3 again, 4, untracked
        env(3, t2, boxes((3, BOX_A))),  # box first ...
        env(4, t2, embedding(3, seed=2, box=BOX_A, codec=F16)),  # ... then its embedding
        env(5, t2, FrameCounts("cam-a", {2: 2, 0: 1})),
    ]
    out = receive(session, *batch)
    assert isinstance(out[-1], Ack)
    assert out[-1].seqs() == [1, 2, 3, 4, 5]
    # Sightings: track 3 at t1 (one row for box + embedding), 4 at t1, untracked at t1,
    # 3 at t2 (box then embedding: one row).
    assert count(engine, detections) == 4
    assert count(engine, embeddings) == 2
    assert count(engine, detections, detections.c.has_embedding.is_(True)) == 2
    assert count(engine, tracks) == 2
    assert count(engine, frame_counts) == 2
    # A repeat of the whole batch (edge resend) adds nothing.
    receive(session, *batch)
    assert count(engine, detections) == 4
    assert journal.count(engine, "edge-01") == 5
    with engine.connect() as conn:
        first, last = conn.execute(
            select(tracks.c.first_seen_us, tracks.c.last_seen_us).where(tracks.c.local_id == 3)
        ).one()
    assert (first, last) == (t1, t2)


def test_track_end_late_boxes_and_reused_tracker_ids(engine: Engine) -> None:
    store = Store(engine, CodecSet())
    session = EdgeSession("edge-01", "s1", store)
    receive(session, hello())
    end = TrackEnd("cam-a", 7, T0, T0 + 5 * S, 50, {2: 40, 7: 10}, (BOX_A, BOX_B))
    receive(
        session,
        env(1, T0, embedding(7, seed=1, box=BOX_A)),
        env(2, T0 + 5 * S, end),  # priority: the end overtakes boxes sent earlier
        env(3, T0 + 3 * S, boxes((7, BOX_B))),  # late box inside the ended span: same track
        env(4, T0 + 100 * S, boxes((7, BOX_A))),  # tracker id reused much later: a new track
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(tracks.c.id, tracks.c.ended, tracks.c.frames, tracks.c.class_id).order_by(
                tracks.c.id
            )
        ).all()
        assert [(r.ended, r.frames, r.class_id) for r in rows] == [(True, 50, 2), (False, None, 2)]
        per_track = dict(
            conn.execute(
                select(detections.c.track_id, func.count()).group_by(detections.c.track_id)
            ).all()
        )
    assert per_track == {rows[0].id: 2, rows[1].id: 1}


def test_vectors_for_the_index_are_decoded_after_commit(engine: Engine) -> None:
    store = Store(engine, CodecSet())
    session = EdgeSession("edge-01", "s1", store)
    receive(session, hello())
    request = session.parse(
        pack_batch([env(1, T0, embedding(1, 11, BOX_A)), env(2, T0, embedding(2, 12, BOX_B, F16))])
    )[1]
    assert request is not None
    _results, [batch] = store.write([request])
    ids, vectors, cams, classes, ts = batch.arrays()
    assert batch.space == space_name("vit_test", DIM, False)
    assert len(ids) == 2
    assert set(classes) == {2}
    assert set(ts) == {T0}
    got = {int(i): v for i, v in zip(ids, vectors, strict=True)}
    with engine.connect() as conn:
        for det_id, codec_fp, code in conn.execute(
            select(embeddings.c.detection_id, embeddings.c.codec, embeddings.c.code)
        ):
            decoded = store.codecs.resolve(codec_fp).decode(code)[0]
            np.testing.assert_allclose(got[det_id], decoded)
    assert np.dot(got[min(got)], vec(11)) > 0.99  # int8 round trip of the sent vector
    assert len(set(cams)) == 1


def test_retention_deletes_old_rows_and_keeps_repeats_out(engine: Engine) -> None:
    store = Store(engine, CodecSet())
    session = EdgeSession("edge-01", "s1", store)
    receive(session, hello())
    old, new = T0, T0 + 3600 * S
    receive(
        session,
        env(1, old, embedding(1, 1, BOX_A)),
        env(2, old, FrameCounts("cam-a", {2: 1})),
        env(3, new, embedding(2, 2, BOX_B)),
    )
    cut_at: list[int] = []

    def cut(ts: int) -> int:
        store.set_horizon(ts)
        cut_at.append(ts)
        return 0

    retention = Retention(engine, 1800.0, CloudMetrics(), cut)
    removed = retention.run_once(now_s=new / 1e6)
    assert removed["detections"] == 1
    assert removed["embeddings"] == 1
    assert removed["frame_counts"] == 1
    assert removed["tracks"] == 1
    assert removed["journal_frames"] == 2
    assert cut_at == [new - 1800 * S]
    assert count(engine, detections) == 1
    # The edge sends seq 1 again (its ack was lost): still a repeat, not a new row.
    [ack] = receive(session, env(1, old, embedding(1, 1, BOX_A)))
    assert isinstance(ack, Ack)
    assert ack.seqs() == [1]
    assert count(engine, detections) == 1
    # A message captured before the cut-off that arrives late is acked, not catalogued.
    [ack] = receive(session, env(4, old, embedding(3, 3, BOX_A)))
    assert isinstance(ack, Ack)
    assert ack.seqs() == [4]
    assert count(engine, detections) == 1
