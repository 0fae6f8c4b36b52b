"""What an operator does with a spool file (``semcom edge spool``): look at it, and decide
about the frames the cloud refused (retry them, or drop them).

Safe while an edge runs on the same file: every change is one SQLite transaction, and seqs
come from the spool's stored counter.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge.spool import Priority, Spool, reseq
from shared.codec import peek_type
from shared.errors import ProtocolError


@dataclass(frozen=True)
class Quarantined:
    """A frame the cloud refused, kept aside."""

    seq: int
    type: str  # message type (Embedding, TrackEnd, ...)
    size: int
    reason: str  # the cloud's error code and message
    quarantined: float  # when (Unix time, s)
    hello: int | None


def quarantined(spool: Spool) -> list[Quarantined]:
    with spool.transaction() as db:
        rows = db.execute(
            "SELECT seq, size, reason, quarantined, hello, frame FROM quarantine ORDER BY seq"
        ).fetchall()
    out = []
    for seq, size, reason, when, hello, frame in rows:
        try:
            kind = peek_type(bytes(frame)).name.title().replace("_", "")
        except ProtocolError:
            kind = "?"
        out.append(Quarantined(int(seq), kind, int(size), str(reason), float(when), hello))
    return out


def _where(seqs: Iterable[int] | None) -> tuple[str, list[int]]:
    if seqs is None:
        return "", []
    ids = sorted({int(s) for s in seqs})
    return f"WHERE seq IN ({','.join('?' * len(ids)) or 'NULL'})", ids


def retry(spool: Spool, seqs: Iterable[int] | None = None) -> int:
    """Put quarantined frames (``seqs``, or all) back among the pending ones, each under a new
    seq (its old one may be taken by a renumbered spool; the cloud never stored it). The
    spool's size bound does not apply: the operator asked for them. Returns how many."""
    where, args = _where(seqs)
    with spool.transaction() as db:
        rows = db.execute(
            f"SELECT seq, priority, frame, created, hello FROM quarantine {where} ORDER BY seq",
            args,
        ).fetchall()
        first = spool.allocate(len(rows))
        for i, (_old, prio, frame, created, hello) in enumerate(rows):
            new = reseq(bytes(frame), first + i)
            db.execute(
                "INSERT INTO frames (seq, priority, size, frame, created, hello) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (first + i, prio, len(new), new, created, hello),
            )
        db.execute(f"DELETE FROM quarantine {where}", args)
    return len(rows)


def drop(spool: Spool, seqs: Iterable[int] | None = None) -> int:
    """Delete quarantined frames (``seqs``, or all) for good; returns how many."""
    where, args = _where(seqs)
    with spool.transaction() as db:
        return int(db.execute(f"DELETE FROM quarantine {where}", args).rowcount)


def stats(spool: Spool) -> dict[str, Any]:
    """Pending frames by priority and by Hello (encoder, cameras), bytes, oldest age, the
    quarantine's size and the spool's incarnation."""
    with spool.transaction() as db:
        by_priority = {
            Priority(p).name: int(n)
            for p, n in db.execute("SELECT priority, COUNT(*) FROM frames GROUP BY priority")
        }
        oldest = db.execute("SELECT MIN(created) FROM frames").fetchone()[0]
        q_count, q_bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM quarantine"
        ).fetchone()
    groups = []
    for group in spool.groups():
        entry: dict[str, Any] = {"hello": group.hello, "pending": group.frames}
        if group.hello is None:
            entry["encoder"] = None
            entry["note"] = "made before the spool kept Hellos (sent under the live Hello)"
        else:
            hello = spool.hello(group.hello)
            entry["encoder"] = hello.encoder
            entry["embedding_dim"] = hello.embedding_dim
            entry["codecs"] = [c.codec_id for c in hello.codecs]
            entry["cameras"] = [c.camera for c in hello.cameras]
        groups.append(entry)
    return {
        "path": str(spool.path),
        "incarnation": spool.incarnation,
        "pending": spool.pending,
        "pending_bytes": spool.pending_bytes,
        "next_seq": spool.next_seq,
        "oldest_age_s": round(max(0.0, time.time() - oldest), 1) if oldest else 0.0,
        "by_priority": by_priority,
        "by_hello": groups,
        "quarantined": int(q_count),
        "quarantined_bytes": int(q_bytes),
    }
