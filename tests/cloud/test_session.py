"""The cloud's receiving side without a transport: journal (exactly once) and session rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud import journal
from cloud.db import open_database
from cloud.journal import Frame
from cloud.project import Space
from cloud.session import EdgeSession
from cloud.store import Store, WriteRequest
from shared.codec import decode, encode
from shared.framing import pack_batch
from shared.geometry import Box
from shared.messages import (
    Ack,
    CameraInfo,
    CodecRef,
    Embedding,
    EmitReason,
    Envelope,
    Error,
    ErrorCode,
    FrameCounts,
    Heartbeat,
    Hello,
    HelloAck,
)
from shared.vectors import CodecSet, create_codec, fingerprint

INT8 = create_codec("int8", 64)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(open_database(f"sqlite:///{tmp_path / 'cloud.db'}"), CodecSet())


def stored(store: Store, edge_id: str) -> int:
    return journal.count(store.engine, edge_id)


def frames(edge_id: str, seqs: list[int], payload: bytes = b"f") -> WriteRequest:
    return WriteRequest(edge_id, Space(0, "none"), [Frame(s, 6, 0, payload) for s in seqs])


def hello(codec_hash: bytes = INT8.content_hash) -> bytes:
    msg = Hello(
        "0.1.0",
        "det",
        "enc",
        64,
        (CodecRef("int8", codec_hash),),
        (CameraInfo("cam-01", 640, 360, 25.0),),
        True,
    )
    return encode(Envelope("edge-01", 0, 1, 1, msg))


def counts(seq: int, edge: str = "edge-01") -> bytes:
    return encode(Envelope(edge, seq, 1000 + seq, 1000 + seq, FrameCounts("cam-01", {2: seq})))


def embedding(seq: int, codec: int = fingerprint(INT8)) -> bytes:
    msg = Embedding(
        "cam-01", 3, EmitReason.FIRST_SIGHT, 2, 0.5, Box(0, 0, 0.1, 0.1), codec, bytes(68)
    )
    return encode(Envelope("edge-01", seq, 5, 6, msg))


def replies(session: EdgeSession, data: bytes) -> list[object]:
    return [decode(r).message for r in session.receive(data)]


def test_journal_stores_each_frame_once(store: Store) -> None:
    [first], _ = store.write([frames("e", [1, 2, 4])])
    assert (first.stored, first.duplicates, first.watermark) == ([1, 2, 4], [], 2)
    [again], _ = store.write([frames("e", [2, 3])])
    assert (again.stored, again.duplicates, again.watermark) == ([3], [2], 4)
    assert stored(store, "e") == 4
    assert store.watermark("other") == 0


def test_session_handshake_data_and_acks(store: Store) -> None:
    session = EdgeSession("edge-01", "s-1", store)
    [ack] = replies(session, hello())
    assert isinstance(ack, HelloAck)
    assert (ack.session_id, ack.last_seq) == ("s-1", 0)
    [a] = replies(session, pack_batch([counts(1), counts(2), embedding(3), counts(5)]))
    assert isinstance(a, Ack)
    assert a.ranges == (1, 3, 5, 5)
    assert a.seq == 3
    # A resend after a reconnect: acknowledged again, stored once.
    [b] = replies(session, pack_batch([counts(2), counts(4)]))
    assert isinstance(b, Ack)
    assert b.seqs() == [2, 4]
    assert b.seq == 5
    assert stored(store, "edge-01") == 5
    assert (session.stats.stored, session.stats.duplicates) == (5, 1)


def test_a_new_session_reports_the_watermark(store: Store) -> None:
    first = EdgeSession("edge-01", "s-1", store)
    first.receive(hello())
    first.receive(pack_batch([counts(1), counts(2)]))
    second = EdgeSession("edge-01", "s-2", store)
    [ack] = replies(second, hello())
    assert isinstance(ack, HelloAck)
    assert ack.last_seq == 2


def test_codec_mismatch_is_fatal_and_reported(store: Store) -> None:
    session = EdgeSession("edge-01", "s-1", store)
    [err] = replies(session, hello(create_codec("int8", 32).content_hash))
    assert isinstance(err, Error)
    assert err.code is ErrorCode.CODEC_MISMATCH
    assert err.fatal
    assert "'int8' mismatch" in err.message
    assert session.receive(counts(1)) == []  # closed
    assert stored(store, "edge-01") == 0


def test_bad_frames_are_refused_alone(store: Store) -> None:
    session = EdgeSession("edge-01", "s-1", store)
    [err] = replies(session, counts(1))
    assert isinstance(err, Error)
    assert "Hello must come first" in err.message
    session.receive(hello())
    out = replies(
        session,
        pack_batch(
            [
                counts(1),
                b"SC\x04\x07\x00garbage",
                counts(2, "edge-99"),
                embedding(3, codec=0xDEAD),
                counts(4),
            ]
        ),
    )
    errors = [m for m in out if isinstance(m, Error)]
    assert [e.code for e in errors] == [
        ErrorCode.BAD_MESSAGE,
        ErrorCode.BAD_MESSAGE,
        ErrorCode.UNKNOWN_CODEC,
    ]
    assert "undecodable frame" in errors[0].message
    assert "from edge 'edge-99'" in errors[1].message
    assert not any(e.fatal for e in errors)
    [ack] = [m for m in out if isinstance(m, Ack)]
    assert ack.seqs() == [1, 4]  # the good frames of the batch are stored and acknowledged
    [bad] = replies(session, b"SB\x01\xff")
    assert isinstance(bad, Error)
    assert "bad batch" in bad.message


def test_racing_sessions_store_each_frame_once(store: Store) -> None:
    import threading

    batch = frames("edge-01", list(range(1, 201)))
    results = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            results.append(store.write([batch])[0][0])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stored(store, "edge-01") == 200
    assert sum(len(r.stored) for r in results) == 200
    assert store.watermark("edge-01") == 200


def test_heartbeats_are_answered_and_never_stored(store: Store) -> None:
    session = EdgeSession("edge-01", "s-1", store)
    replies(session, hello())
    beat = encode(Envelope("edge-01", 0, 7, 7, Heartbeat(12, 256_000.0)))
    [answer] = replies(session, beat)
    assert isinstance(answer, Heartbeat)
    assert session.edge_backlog == 12
    assert stored(store, "edge-01") == 0


def test_a_hello_the_database_cannot_register_ends_the_session_without_refusing_frames(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy or down database at Hello time (SQLite's lock under heavy ingest): a non-fatal
    INTERNAL Error without a seq and the session ends, so the edge reconnects and sends again;
    no data frame gets an Error naming its seq (the edge would set it aside)."""
    from sqlalchemy.exc import OperationalError

    def busy(*_args: object) -> Space:
        raise OperationalError("INSERT INTO edges ...", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "register", busy)
    session = EdgeSession("edge-01", "s1", store)
    got = replies(session, pack_batch([hello(), embedding(1), embedding(2)]))
    assert len(got) == 1
    error = got[0]
    assert isinstance(error, Error)
    assert (error.code, error.fatal, error.ref_seq) == (ErrorCode.INTERNAL, False, 0)
    assert session.closed
    assert replies(session, embedding(3)) == []
    assert stored(store, "edge-01") == 0
