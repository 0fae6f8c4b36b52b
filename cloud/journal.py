"""The receiving journal: every frame an edge sent, stored once, before it is acknowledged.

A frame is keyed by (edge id, seq); storing a repeat is a no-op reported as a duplicate, so an
edge that resends after a reconnect or restart never creates a second copy. The per-edge
watermark is the highest seq up to which every seq is stored. The journal keeps frames exactly
as received. Its functions run inside the caller's transaction (:mod:`cloud.store` writes the
journal and the catalog rows of the same frames atomically).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, String, bindparam, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from cloud.schema import bulk_insert
from cloud.schema import journal_frames as frames
from cloud.schema import journal_watermarks as watermarks

# Bounded work per store when seqs are missing (an edge spool evicted them): the watermark then
# advances across at most this many stored seqs per call.
_ADVANCE_SCAN = 10_000


# The hot statements, built once (SQLAlchemy then neither rebuilds nor re-keys them per call,
# and an expanding IN does not coerce each seq): they run per edge in every group commit.
_STORED = select(frames.c.seq).where(
    frames.c.edge_id == bindparam("edge"), frames.c.seq.in_(bindparam("seqs", expanding=True))
)
_VERSION = select(literal_column("xmin::text", String())).where(
    watermarks.c.edge_id == bindparam("edge")
)
_MARKS = select(watermarks.c.watermark, watermarks.c.max_seq).where(
    watermarks.c.edge_id == bindparam("edge")
)
_FOLLOWING = (
    select(frames.c.seq)
    .where(frames.c.edge_id == bindparam("edge"), frames.c.seq > bindparam("mark"))
    .order_by(frames.c.seq)
    .limit(_ADVANCE_SCAN)
)


@dataclass(frozen=True)
class Frame:
    """One received frame, identified by (edge, seq)."""

    seq: int
    type: int
    capture_ts_us: int
    frame: bytes


def lock_edge(conn: Connection, edge_id: str) -> int | None:
    """Lock the edge's watermark row for the rest of the transaction; returns its watermark.

    Several replicas may store frames of one edge at once (an old session not yet noticed
    dead, and the new one). Each reads the watermark row and the frames after it, then writes
    the row back: without the lock the later writer computed it from a snapshot lacking the
    other's frames and lowered the watermark and ``max_seq`` (a replaced spool then numbered
    new frames onto stored seqs: lost as repeats). With it, writers of one edge take turns
    and each sees the frames the other committed (PostgreSQL's READ COMMITTED reads a fresh
    snapshot per statement). A missing row is made first, so there is one to lock. SQLite
    has one writer at a time anyway (``FOR UPDATE`` is not rendered there).
    """
    locked = select(watermarks.c.watermark).where(watermarks.c.edge_id == edge_id)
    locked = locked.with_for_update()
    row = conn.execute(locked).first()
    if row is None and conn.dialect.name == "postgresql":
        conn.execute(
            pg_insert(watermarks)
            .values(edge_id=edge_id, watermark=0)
            .on_conflict_do_nothing(index_elements=[watermarks.c.edge_id])
        )
        row = conn.execute(locked).first()
    return int(row[0]) if row is not None else None


def row_version(conn: Connection, edge_id: str) -> str | None:
    """PostgreSQL: the version of the edge's watermark row (its ``xmin``, the transaction that
    last wrote it: every store of new frames does); None on SQLite (one writer). A replica
    that finds another version than the one it left knows another replica stored frames of
    this edge since, and that its caches of the edge's rows are stale."""
    if conn.dialect.name != "postgresql":
        return None
    found = conn.execute(_VERSION, {"edge": edge_id}).scalar()
    return str(found) if found is not None else None


def insert_new(
    conn: Connection, edge_id: str, items: Sequence[Frame]
) -> tuple[list[int], list[int]]:
    """Insert the frames not stored yet; returns (new seqs, repeated seqs), both sorted.

    A seq at or below the watermark counts as stored even when retention has deleted it since.
    Takes the edge's lock (:func:`lock_edge`) first.
    """
    unique = {i.seq: i for i in items}
    if not unique:
        return [], []
    mark = lock_edge(conn, edge_id)
    old = {s for s in unique if mark is not None and s <= mark}
    asked = [s for s in unique if s not in old]
    existing = old | set(conn.execute(_STORED, {"edge": edge_id, "seqs": asked}).scalars())
    now = time.time_ns() // 1_000
    new = [i for s, i in sorted(unique.items()) if s not in existing]
    if new:
        bulk_insert(
            conn,
            frames,
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
    return [i.seq for i in new], sorted(existing)


@dataclass(frozen=True)
class EdgeState:
    """What the journal holds of one edge: its watermark, the spool incarnation its last
    stored frames came from ("" for none) and the highest seq ever stored."""

    watermark: int = 0
    spool_id: str = ""
    max_seq: int = 0

    @property
    def next_seq(self) -> int:
        """The first seq never stored for this edge."""
        return self.max_seq + 1


def advance(
    conn: Connection, edge_id: str, new: Sequence[int] = (), spool_id: str | None = None
) -> int:
    """Move the edge's watermark over every seq stored without a gap; returns it.

    ``new`` are the seqs just stored, from the spool incarnation ``spool_id``: both are
    recorded here, in the transaction that stored them (never at Hello time: see "A reset or
    replaced spool" in docs/wire.md).
    """
    state = conn.execute(_MARKS, {"edge": edge_id}).first()
    row = int(state[0]) if state is not None else None
    mark = row if row is not None else 0
    following = conn.execute(_FOLLOWING, {"edge": edge_id, "mark": mark}).scalars()
    for seq in following:
        if seq != mark + 1:
            break
        mark = int(seq)
    old_max = int(state[1]) if state is not None else 0
    values: dict[str, object] = {"watermark": mark, "max_seq": max(old_max, mark, *new)}
    if new and spool_id is not None:
        values["spool_id"] = spool_id
    if state is None:
        conn.execute(watermarks.insert().values(edge_id=edge_id, **values))
    elif mark != row or values["max_seq"] != old_max or "spool_id" in values:
        conn.execute(update(watermarks).where(watermarks.c.edge_id == edge_id).values(**values))
    return mark


def state(engine: Engine, edge_id: str) -> EdgeState:
    with engine.connect() as conn:
        row = conn.execute(
            select(watermarks.c.watermark, watermarks.c.spool_id, watermarks.c.max_seq).where(
                watermarks.c.edge_id == edge_id
            )
        ).first()
    if row is None:
        return EdgeState()
    return EdgeState(int(row[0]), str(row[1]), int(row[2]))


def watermark(engine: Engine, edge_id: str) -> int:
    return state(engine, edge_id).watermark


def count(engine: Engine, edge_id: str) -> int:
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(frames).where(frames.c.edge_id == edge_id)
        ).scalar()
    return int(n or 0)
