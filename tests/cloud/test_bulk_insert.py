"""``bulk_insert``: the ingest writer's driver-level inserts (SQLite executemany, PostgreSQL
COPY) store what a Core insert stores and fail as a Core insert fails."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cloud.db import open_database
from cloud.schema import bulk_insert, journal_frames


def _frame(seq: int, data: bytes) -> dict[str, object]:
    return {
        "edge_id": "edge-a",
        "seq": seq,
        "type": 3,
        "capture_ts_us": 1_700_000_000_000_000 + seq,
        "received_us": 7,
        "frame": data,
    }


def test_rows_round_trip_every_value(database_url: str) -> None:
    engine = open_database(database_url)
    awkward = bytes(range(256)) + b"\\\n\t\r\x00"  # COPY's escapes and a NUL
    with engine.begin() as conn:
        bulk_insert(conn, journal_frames, [_frame(1, awkward), _frame(2, b"x")])
    with engine.connect() as conn:
        rows = conn.execute(select(journal_frames).order_by(journal_frames.c.seq)).all()
    engine.dispose()
    assert [(r.seq, r.type, r.capture_ts_us, bytes(r.frame)) for r in rows] == [
        (1, 3, 1_700_000_000_000_001, awkward),
        (2, 3, 1_700_000_000_000_002, b"x"),
    ]


def test_a_key_conflict_is_sqlalchemys_integrity_error_and_rolls_back(database_url: str) -> None:
    """The writer retries a group commit on IntegrityError (another replica stored the frame
    first): the driver path must raise it, not the driver's own exception."""
    engine = open_database(database_url)
    with engine.begin() as conn:
        bulk_insert(conn, journal_frames, [_frame(1, b"a")])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        bulk_insert(conn, journal_frames, [_frame(2, b"b"), _frame(1, b"again")])
    with engine.connect() as conn:
        seqs = conn.execute(select(journal_frames.c.seq)).scalars().all()
    engine.dispose()
    assert seqs == [1]
