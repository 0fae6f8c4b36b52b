"""The receiving journal: every frame an edge sent, stored once, before it is acknowledged.

A frame is keyed by (edge id, seq); storing a repeat is a no-op reported as a duplicate, so an
edge that resends after a reconnect or restart never creates a second copy. The per-edge
watermark is the highest seq up to which every seq is stored. The journal keeps frames exactly
as received (the encoded form is the source of truth the catalog and indexes are built from).

SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL by URL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

metadata = MetaData()

frames = Table(
    "journal_frames",
    metadata,
    Column("edge_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("type", SmallInteger, nullable=False),
    Column("capture_ts_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("frame", LargeBinary, nullable=False),
)

watermarks = Table(
    "journal_watermarks",
    metadata,
    Column("edge_id", String(64), primary_key=True),
    Column("watermark", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Incoming:
    """One decoded-and-validated frame to store."""

    seq: int
    type: int
    capture_ts_us: int
    frame: bytes


@dataclass(frozen=True)
class StoreResult:
    stored: list[int]
    duplicates: list[int]
    watermark: int


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged frame survives power loss
    cursor.close()


class Journal:
    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    def store(self, edge_id: str, items: Sequence[Incoming]) -> StoreResult:
        """Store new frames and report repeats, in one transaction (commit before any ack).

        Two sessions of one edge may race (a reconnect overlapping the old session): a
        primary-key conflict means the other stored the frame first, so the batch is retried.
        """
        for attempt in range(3):
            try:
                return self._store(edge_id, items)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _store(self, edge_id: str, items: Sequence[Incoming]) -> StoreResult:
        now = time.time_ns() // 1_000
        unique = {i.seq: i for i in items}
        with self.engine.begin() as conn:
            existing = (
                set(
                    conn.execute(
                        select(frames.c.seq).where(
                            frames.c.edge_id == edge_id, frames.c.seq.in_(list(unique))
                        )
                    ).scalars()
                )
                if unique
                else set()
            )
            new = [i for s, i in sorted(unique.items()) if s not in existing]
            if new:
                conn.execute(
                    frames.insert(),
                    [
                        {
                            "edge_id": edge_id,
                            "seq": i.seq,
                            "type": i.type,
                            "capture_ts_us": i.capture_ts_us,
                            "received_us": now,
                            "frame": i.frame,
                        }
                        for i in new
                    ],
                )
            mark = self._advance(conn, edge_id)
        return StoreResult([i.seq for i in new], sorted(existing), mark)

    def _advance(self, conn: Any, edge_id: str) -> int:
        row = conn.execute(
            select(watermarks.c.watermark).where(watermarks.c.edge_id == edge_id)
        ).scalar()
        mark = int(row) if row is not None else 0
        following = conn.execute(
            select(frames.c.seq)
            .where(frames.c.edge_id == edge_id, frames.c.seq > mark)
            .order_by(frames.c.seq)
            .limit(10_000)  # bounded work per call; the next call continues
        ).scalars()
        for seq in following:
            if seq != mark + 1:
                break
            mark = int(seq)
        if row is None:
            conn.execute(watermarks.insert().values(edge_id=edge_id, watermark=mark))
        elif mark != row:
            conn.execute(
                update(watermarks).where(watermarks.c.edge_id == edge_id).values(watermark=mark)
            )
        return mark

    def watermark(self, edge_id: str) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(watermarks.c.watermark).where(watermarks.c.edge_id == edge_id)
            ).scalar()
        return int(row) if row is not None else 0

    def count(self, edge_id: str) -> int:
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count()).select_from(frames).where(frames.c.edge_id == edge_id)
            ).scalar()
        return int(n or 0)
