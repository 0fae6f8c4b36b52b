"""Bundle frames on the cloud side: each message is checked, stored, acknowledged or refused by
its own seq, exactly as if it had come alone."""

from __future__ import annotations

import sqlalchemy as sa

from cloud.schema import journal_frames
from cloud.session import EdgeSession
from cloud.store import Store
from shared.bundle import encode_bundle, quantise
from shared.codec import decode
from shared.framing import pack_batch
from shared.geometry import Box
from shared.messages import (
    Ack,
    Detections,
    Embedding,
    EmitReason,
    Envelope,
    Error,
    ErrorCode,
    FrameCounts,
)
from shared.vectors import fingerprint
from tests.cloud.test_session import INT8, counts, hello, replies, store

__all__ = ["store"]  # the fixture


def _embedding(seq: int, codec: int = fingerprint(INT8), code: bytes = bytes(68)) -> Envelope:
    msg = Embedding(
        "cam-01", 3, EmitReason.FIRST_SIGHT, 2, 0.5, Box(0.1, 0.1, 0.2, 0.3), codec, code
    )
    return Envelope("edge-01", seq, 40_000 * seq, 40_000 * seq, msg)


def _counts(seq: int, edge: str = "edge-01") -> Envelope:
    return Envelope(edge, seq, 40_000 * seq, 40_000 * seq, FrameCounts("cam-01", {2: seq}))


def _boxes(seq: int) -> Envelope:
    box = Box(0.1 + 0.01 * seq, 0.2, 0.2 + 0.01 * seq, 0.3)
    msg = Detections("cam-01", (box,), (2,), (0.73,), (3,))
    return Envelope("edge-01", seq, 40_000 * seq, 40_000 * seq, msg)


def _journal(store: Store) -> dict[int, bytes]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(journal_frames.c.seq, journal_frames.c.frame).where(
                journal_frames.c.edge_id == "edge-01"
            )
        )
        return {int(seq): bytes(frame) for seq, frame in rows}


def test_a_bundle_with_bad_messages_stores_the_others_and_refuses_each_by_its_seq(
    store: Store,
) -> None:
    session = EdgeSession("edge-01", "s1", store)
    session.receive(hello())
    bundle = [
        _counts(1),
        _embedding(2, codec=0xDEAD),  # a codec the Hello did not announce
        _boxes(3),
        _embedding(4, code=bytes(5)),  # the wrong code size
        _embedding(5),
        _boxes(6),
    ]
    out = replies(session, encode_bundle(bundle, box_step=64))
    errors = [m for m in out if isinstance(m, Error)]
    assert [(e.code, e.ref_seq, e.fatal) for e in errors] == [
        (ErrorCode.UNKNOWN_CODEC, 2, False),
        (ErrorCode.BAD_MESSAGE, 4, False),
    ]
    (ack,) = [m for m in out if isinstance(m, Ack)]
    assert ack.seqs() == [1, 3, 5, 6]
    # the journal keeps each stored message as a frame of its own, as the bundle delivered it
    kept = {seq: decode(frame) for seq, frame in _journal(store).items()}
    assert sorted(kept) == [1, 3, 5, 6]
    for env in bundle:
        if env.seq in kept:
            assert kept[env.seq].message == quantise(env.message, 64)
            assert kept[env.seq].capture_ts_us == env.capture_ts_us
    assert session.stats.received == 6 + 1  # the Hello and six messages
    assert (session.stats.stored, session.stats.duplicates) == (4, 0)

    # The same bundle again (the edge never saw the Ack): acknowledged, stored once.
    again = replies(session, encode_bundle(bundle, box_step=64))
    (ack,) = [m for m in again if isinstance(m, Ack)]
    assert ack.seqs() == [1, 3, 5, 6]
    assert (session.stats.stored, session.stats.duplicates) == (4, 4)
    assert sorted(_journal(store)) == [1, 3, 5, 6]


def test_bundles_and_single_frames_mix_in_one_batch(store: Store) -> None:
    session = EdgeSession("edge-01", "s1", store)
    session.receive(hello())
    batch = pack_batch(
        [
            encode_bundle([_counts(1), _boxes(2)]),
            b"SC\x04\x20\x00\x05garbage",  # a bundle that does not decode: refused, seq unknown
            counts(3),
            encode_bundle([_counts(4, edge="edge-99")]),  # another edge's: refused by seq
            encode_bundle([_boxes(5), _counts(6)]),
        ]
    )
    out = replies(session, batch)
    errors = [(m.code, m.ref_seq) for m in out if isinstance(m, Error)]
    assert errors == [(ErrorCode.BAD_MESSAGE, 0), (ErrorCode.BAD_MESSAGE, 4)]
    (ack,) = [m for m in out if isinstance(m, Ack)]
    assert ack.seqs() == [1, 2, 3, 5, 6]
    assert sorted(_journal(store)) == [1, 2, 3, 5, 6]


def test_a_bundle_of_an_old_version_ends_the_session(store: Store) -> None:
    session = EdgeSession("edge-01", "s1", store)
    session.receive(hello())
    frame = bytearray(encode_bundle([_counts(1)]))
    frame[2] = 3
    (error,) = replies_v3(session, bytes(frame))
    assert isinstance(error, Error)
    assert (error.code, error.fatal) == (ErrorCode.VERSION_MISMATCH, True)
    assert session.closed
    assert _journal(store) == {}


def replies_v3(session: EdgeSession, data: bytes) -> list[object]:
    """Replies written in version 3 (the refused peer's), read as today's."""
    return [decode(r[:2] + b"\x04" + r[3:]).message for r in session.receive(data)]
