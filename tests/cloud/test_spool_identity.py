"""The cloud's side of "a reset or replaced spool" (docs/wire.md): what HelloAck reports, and
that a frame of another protocol version is refused with a fatal Error the sender can read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cloud import journal
from cloud.db import open_database
from cloud.session import EdgeSession
from cloud.store import Store
from shared import limits
from shared.codec import decode, encode
from shared.framing import pack_batch
from shared.messages import CameraInfo, Envelope, Error, ErrorCode, FrameCounts, Hello, HelloAck
from shared.vectors import CodecSet

EDGE = "edge-01"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(open_database(f"sqlite:///{tmp_path / 'cloud.db'}"), CodecSet())


def hello(spool_id: str) -> bytes:
    msg = Hello("0.1.0", "det", "enc", 64, (), (CameraInfo("cam-01", 640, 360, 25.0),), False)
    return encode(Envelope(EDGE, 0, 1, 1, replace(msg, spool_id=spool_id)))


def counts(*seqs: int) -> bytes:
    return pack_batch(
        encode(Envelope(EDGE, s, 1000 + s, 1000 + s, FrameCounts("cam-01", {2: s}))) for s in seqs
    )


def handshake(store: Store, spool_id: str, name: str = "s") -> tuple[EdgeSession, HelloAck]:
    session = EdgeSession(EDGE, name, store)
    [reply] = session.receive(hello(spool_id))
    ack = decode(reply).message
    assert isinstance(ack, HelloAck)
    return session, ack


def test_hello_ack_names_the_spool_of_the_stored_frames_and_the_next_free_seq(
    store: Store,
) -> None:
    session, ack = handshake(store, "spool-a")
    assert (ack.last_seq, ack.spool_id, ack.next_seq) == (0, "", 1)
    session.receive(counts(1, 2, 3, 7))  # 4-6 missing: watermark 3, highest 7
    _, ack = handshake(store, "spool-b")
    assert (ack.last_seq, ack.spool_id, ack.next_seq) == (3, "spool-a", 8)
    # A Hello alone changes nothing: an edge that crashed before renumbering asks again and
    # gets the same answer.
    session_b, ack = handshake(store, "spool-b")
    assert (ack.last_seq, ack.spool_id, ack.next_seq) == (3, "spool-a", 8)
    # Repeats do not move the incarnation either; a stored frame of the new spool does.
    session_b.receive(counts(2))
    assert handshake(store, "spool-b")[1].spool_id == "spool-a"
    session_b.receive(counts(8, 9))
    _, ack = handshake(store, "spool-b")
    assert (ack.last_seq, ack.spool_id, ack.next_seq) == (3, "spool-b", 10)


def test_the_highest_stored_seq_survives_retention(store: Store) -> None:
    from sqlalchemy import delete

    from cloud.schema import journal_frames

    session, _ = handshake(store, "spool-a")
    session.receive(counts(1, 2, 5))
    with store.engine.begin() as conn:  # retention deletes journal rows, never the record
        conn.execute(delete(journal_frames))
    _, ack = handshake(store, "spool-b")
    assert (ack.last_seq, ack.spool_id, ack.next_seq) == (2, "spool-a", 6)


def test_a_v1_edge_gets_a_fatal_version_mismatch_it_can_read(store: Store) -> None:
    v2 = hello("spool-a")
    v1 = v2[:2] + b"\x01" + v2[3:]  # what an edge of protocol version 1 sends first
    session = EdgeSession(EDGE, "s", store)
    [reply] = session.receive(v1)
    # Written with the version byte the edge spoke: an Error is laid out the same in 1 and 2.
    assert reply[2] == 1
    error = decode(reply[:2] + bytes([limits.PROTOCOL_VERSION]) + reply[3:]).message
    assert isinstance(error, Error)
    assert error.code is ErrorCode.VERSION_MISMATCH
    assert error.fatal
    assert "protocol version 1 is not supported" in error.message
    assert session.closed
    assert session.receive(v2) == []  # the session is over


def test_migration_0003_keeps_the_highest_seq_of_existing_journals(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from cloud.db import alembic_config, make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0002")
    with engine.begin() as conn:  # a journal written before 0003: a gap, and retention
        conn.execute(text("INSERT INTO journal_watermarks VALUES ('a', 3), ('b', 9)"))
        for seq in (1, 2, 3, 7):
            conn.execute(
                text("INSERT INTO journal_frames VALUES ('a', :s, 6, 0, 0, x'00')"), {"s": seq}
            )
    upgrade(engine)
    store = Store(engine, CodecSet())
    assert store.journal_state("a") == journal.EdgeState(3, "", 7)  # max in the journal
    assert store.journal_state("b") == journal.EdgeState(9, "", 9)  # frames pruned: watermark
