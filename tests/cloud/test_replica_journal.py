"""Two replicas storing frames of one edge at once, or in turns, on one real PostgreSQL.

Each replica has its own engine and :class:`~cloud.store.Store` (as two ``semcom cloud serve``
processes do). The journal's watermark row is read, then written, in the storing transaction:
without a lock a second replica computed it from a snapshot that lacked the first replica's
frames and wrote it back over the first's, lowering the watermark and the highest seq stored.
A lower ``max_seq`` is a loss: a replaced spool is told to number its frames after it, and
its new frames land on seqs already stored, where they count as repeats.

Each replica's projector caches the tracks it wrote; when another replica wrote frames of the
same edge in between (the edge moved, or two of its sessions overlap), that cache is stale and
must not be written back or used to decide which track a sighting continues.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from cloud import journal
from cloud.db import open_database
from cloud.journal import Frame
from cloud.project import Received
from cloud.schema import journal_frames, tracks
from cloud.store import Store, WriteRequest, WriteResult
from shared.codec import encode
from shared.geometry import Box
from shared.messages import (
    CameraInfo,
    CodecRef,
    Embedding,
    EmitReason,
    Envelope,
    FrameCounts,
    Hello,
    MessageType,
)
from shared.vectors import CodecSet, create_codec, fingerprint

pytestmark = pytest.mark.postgres

EDGE = "edge-r"
DIM = 16
F16 = create_codec("f16", DIM)
T0 = 1_700_000_000_000_000


def hello(spool_id: str) -> Hello:
    return Hello(
        "0.1.0",
        "yolo11n",
        "vit_test",
        DIM,
        (CodecRef("f16", F16.content_hash),),
        (CameraInfo("cam-a", 640, 480, 10.0),),
        False,
        spool_id,
    )


def frames(seqs: range, tag: int = 0) -> list[Frame]:
    """Journal frames (FrameCounts) for ``seqs``; ``tag`` makes another spool's content."""
    out = []
    for seq in seqs:
        ts = T0 + seq * 1_000
        body = encode(Envelope(EDGE, seq, ts, ts, FrameCounts("cam-a", {2: tag + 1})))
        out.append(Frame(seq, int(MessageType.FRAME_COUNTS), ts, body))
    return out


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[tuple[Store, Store]]:
    engines = [open_database(postgres_url), open_database(postgres_url)]
    stores = [Store(e, CodecSet([F16])) for e in engines]
    yield stores[0], stores[1]
    for e in engines:
        e.dispose()


def request(store: Store, seqs: range, spool_id: str = "spool-1", tag: int = 0) -> WriteRequest:
    space = store.register(EDGE, hello(spool_id), [F16])
    return WriteRequest(EDGE, space, frames(seqs, tag), spool_id=spool_id)


def wait_for_lock_wait(engine: Engine, timeout_s: float = 20.0) -> None:
    """Until a backend of this database waits on a lock (the other replica's transaction)."""
    deadline = time.monotonic() + timeout_s
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the second replica's transaction never waited on a lock")


def stored_seqs(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [
            int(s)
            for s in conn.execute(
                select(journal_frames.c.seq)
                .where(journal_frames.c.edge_id == EDGE)
                .order_by(journal_frames.c.seq)
            ).scalars()
        ]


def test_overlapping_writes_of_two_replicas_keep_the_watermark_and_max_seq(
    replicas: tuple[Store, Store],
) -> None:
    a, b = replicas
    a.write([request(a, range(1, 2))])
    later, earlier = request(a, range(102, 201)), request(b, range(2, 102))
    # replica A stores seqs 102..200 and has not committed yet...
    with a.engine.connect() as conn, conn.begin():
        new, _ = journal.insert_new(conn, EDGE, later.frames)
        journal.advance(conn, EDGE, new, later.spool_id)
        # ...while replica B stores 2..101 (the same edge's other session)
        got: list[WriteResult] = []
        errors: list[BaseException] = []

        def write_b() -> None:
            try:
                (result,), _ = b.write([earlier])
                got.append(result)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=write_b)
        thread.start()
        wait_for_lock_wait(a.engine)
    thread.join(30)
    assert not thread.is_alive()
    assert errors == []
    assert got[0].stored == list(range(2, 102))
    assert stored_seqs(a.engine) == list(range(1, 201))
    state = journal.state(a.engine, EDGE)
    assert state.max_seq == 200  # was 101: B's stale view written over A's
    assert state.watermark == 200
    assert got[0].watermark == 200


def test_a_replaced_spool_after_the_race_loses_nothing(replicas: tuple[Store, Store]) -> None:
    """The loss itself: after the race, a new spool is told where to number from; every one
    of its frames must be stored (none taken for a repeat)."""
    a, b = replicas
    a.write([request(a, range(1, 2))])
    later, earlier = request(a, range(102, 201)), request(b, range(2, 102))
    with a.engine.connect() as conn, conn.begin():
        new, _ = journal.insert_new(conn, EDGE, later.frames)
        journal.advance(conn, EDGE, new, later.spool_id)
        thread = threading.Thread(target=lambda: b.write([earlier]))
        thread.start()
        wait_for_lock_wait(a.engine)
    thread.join(30)
    first = journal.state(b.engine, EDGE).next_seq  # what a HelloAck tells the new spool
    fresh = request(b, range(first, first + 50), spool_id="spool-2", tag=1)
    (result,), _ = b.write([fresh])
    assert result.duplicates == []
    assert result.stored == list(range(first, first + 50))
    with b.engine.connect() as conn:
        total = conn.execute(
            select(func.count()).select_from(journal_frames).where(journal_frames.c.edge_id == EDGE)
        ).scalar_one()
    assert total == 200 + 50


def test_many_overlapping_sessions_store_every_seq_once(replicas: tuple[Store, Store]) -> None:
    """Both replicas store the same frames (an edge's old session not yet noticed dead and
    its new one) and neighbouring ones, from two threads: no error, each seq once, and each
    seq reported new by exactly one replica."""
    a, b = replicas
    reports: dict[str, list[WriteResult]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def run(name: str, store: Store, offset: int) -> None:
        try:
            for start in range(1, 600, 20):
                lo = start + offset
                (result,), _ = store.write([request(store, range(lo, lo + 30))])
                reports[name].append(result)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("a", a, 0)),
        threading.Thread(target=run, args=("b", b, 5)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    new = [s for results in reports.values() for r in results for s in r.stored]
    assert sorted(new) == sorted(set(new))  # none stored twice
    assert stored_seqs(a.engine) == sorted(set(new))
    last = 581 + 5 + 29  # b's last request: 586..615
    assert set(new) == set(range(1, last + 1))
    state = journal.state(a.engine, EDGE)
    assert state.watermark == state.max_seq == last


# ---------------------------------------------------------------- tracks across replicas

S = 1_000_000
BOX = Box(0.1, 0.1, 0.2, 0.3)


def sighting(store: Store, seq: int, tracker: int, ts: int) -> None:
    """An embedding of ``tracker`` at ``ts``, stored through ``store`` (one replica)."""
    code = F16.encode(np.full(DIM, 0.25, np.float32)).tobytes()
    msg = Embedding("cam-a", tracker, EmitReason.FIRST_SIGHT, 2, 0.8, BOX, fingerprint(F16), code)
    body = encode(Envelope(EDGE, seq, ts, ts, msg))
    req = request(store, range(0))
    req.frames.append(Frame(seq, int(MessageType.EMBEDDING), ts, body))
    req.messages[seq] = Received(seq, ts, msg)
    (result,), _ = store.write([req])
    assert result.stored == [seq]


def spans(engine: Engine, tracker: int) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(tracks.c.first_seen_us, tracks.c.last_seen_us)
            .where(tracks.c.local_id == tracker)
            .order_by(tracks.c.id)
        ).all()
    return [(int(a) - T0, int(b) - T0) for a, b in rows]


def test_a_replica_does_not_write_a_track_back_from_its_stale_cache(
    replicas: tuple[Store, Store],
) -> None:
    """Replica A caches a track, B extends it, A adds a sighting inside the old span: A's
    update must not shrink the track to what A last knew."""
    a, b = replicas
    sighting(a, 1, 5, T0)
    sighting(b, 2, 5, T0 + 10 * S)
    sighting(a, 3, 5, T0 + 5 * S)
    assert spans(a.engine, 5) == [(0, 10 * S)]  # was [(0, 5 s)]: B's extension lost


def test_a_replica_continues_the_track_another_replica_opened(
    replicas: tuple[Store, Store],
) -> None:
    """A tracker id seen again after a gap opens a new track on B; A, which cached the old
    one, must continue B's track, not open a third."""
    a, b = replicas
    sighting(a, 1, 7, T0)
    sighting(b, 2, 7, T0 + 40 * S)  # past the 30 s gap: a new track
    sighting(a, 3, 7, T0 + 41 * S)
    assert spans(a.engine, 7) == [(0, 0), (40 * S, 41 * S)]  # was three tracks
