"""A durable, bounded store of encoded messages waiting for the cloud's acknowledgement.

Every frame is written here (SQLite in WAL mode, committed) before it is sent; it leaves only
when the cloud acknowledges it, so a crash or restart of either side loses nothing that was
spooled. Sequence numbers are allocated here and persist across restarts, so the cloud's
(edge id, seq) de-duplication stays valid.

The spool has a size bound. When a new frame does not fit, frames of the lowest priority are
dropped, oldest first (per-frame counts and boxes, then embedding updates, then track ends,
then first sightings); a frame never evicts one of higher priority, and control messages are
never spooled. Drops are counted per priority and logged.

Reading order is priority first, then age, so a backlog after an outage drains the most useful
messages first.

Each frame remembers the Hello it was made under (encoder, dim, codecs, cameras), so that it is
sent, even after a restart with another configuration, in a session announced with exactly that
Hello. A frame the cloud refuses moves to the quarantine, where an operator can retry or drop
it (``semcom edge spool``); nothing leaves the spool silently. The schema and the identity of a
spool file (its incarnation) are in :mod:`edge.spool_schema`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from edge.spool_schema import hello_blob, hello_from_blob, prepare
from shared.codec import decode, encode, restamp
from shared.messages import (
    Detections,
    Embedding,
    EmitReason,
    FrameCounts,
    Hello,
    Message,
    TrackEnd,
    TrackSummary,
)

logger = logging.getLogger(__name__)


class Priority(IntEnum):
    """Lower value = more important (sent first, dropped last)."""

    FIRST_SIGHT = 1
    TRACK_END = 2
    EMBEDDING_UPDATE = 3
    BOXES = 4
    COUNTS = 5


def priority_of(message: Message) -> Priority:
    if isinstance(message, Embedding):
        if message.reason is EmitReason.FIRST_SIGHT:
            return Priority.FIRST_SIGHT
        return Priority.EMBEDDING_UPDATE
    if isinstance(message, TrackEnd | TrackSummary):
        return Priority.TRACK_END
    if isinstance(message, Detections):
        return Priority.BOXES
    if isinstance(message, FrameCounts):
        return Priority.COUNTS
    return Priority.FIRST_SIGHT  # anything else that is spooled is rare and important


class SpoolFull(Exception):
    """A frame that cannot be stored: everything spooled is at least as important."""


def reseq(frame: bytes, seq: int) -> bytes:
    """The same message under another seq (and the current protocol version)."""
    return encode(dataclasses.replace(decode(restamp(frame)), seq=seq))


@dataclass(frozen=True)
class Group:
    """Pending frames made under one Hello (``hello`` None: an unknown one, from a spool file
    older than kept Hellos); ``priority`` and ``first_seq`` of its most important frame."""

    hello: int | None
    frames: int
    priority: int
    first_seq: int


#: Frames made under any Hello (the default of :meth:`Spool.peek`).
ANY_HELLO: None = None


class Spool:
    """Thread-safe; one instance per edge id and spool file."""

    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024, *, durable: bool = True):
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed frame survives power loss; NORMAL: survives a process crash only.
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        #: This spool file's identity, announced in Hello (see docs/wire.md).
        self.incarnation = prepare(self._db)
        self._hello_ids: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self.dropped: Counter[str] = Counter()
        row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM frames").fetchone()
        self._bytes, self._count = int(row[0]), int(row[1])
        self._next_seq = max(self._counter("next_seq", 1), self._max_seq() + 1)

    def _counter(self, name: str, default: int) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else default

    def _max_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM frames").fetchone()[0])

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def pending(self) -> int:
        return self._count

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def quarantined(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])

    # ------------------------------------------------------------------ Hellos

    def hello_id(self, hello: Hello) -> int:
        """The id of ``hello`` in this spool (kept the first time it is seen)."""
        blob, digest = hello_blob(hello)
        known = self._hello_ids.get(digest)
        if known is not None:
            return known
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO hellos (hash, hello, created) VALUES (?, ?, ?)",
                (digest, blob, time.time()),
            )
            row = self._db.execute("SELECT id FROM hellos WHERE hash = ?", (digest,)).fetchone()
        self._hello_ids[digest] = int(row[0])
        return int(row[0])

    def hello(self, hello_id: int) -> Hello:
        """The Hello kept under ``hello_id`` (without a spool id)."""
        with self._lock:
            row = self._db.execute("SELECT hello FROM hellos WHERE id = ?", (hello_id,)).fetchone()
        if row is None:
            raise KeyError(f"no Hello {hello_id} in {self.path}")
        return hello_from_blob(bytes(row[0]))

    def groups(self) -> list[Group]:
        """Pending frames by Hello, the group holding the most important oldest frame first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT hello, COUNT(*), MIN(priority), "
                "(SELECT seq FROM frames g WHERE g.hello IS f.hello "
                "ORDER BY priority, seq LIMIT 1) FROM frames f GROUP BY hello"
            ).fetchall()
        groups = [Group(h, int(n), int(p), int(s)) for h, n, p, s in rows]
        return sorted(groups, key=lambda g: (g.priority, g.first_seq))

    # ------------------------------------------------------------------ frames

    def append(
        self, priority: Priority, make_frame: Callable[[int], bytes], hello: int | None = None
    ) -> int:
        """Allocate the next seq, build the frame with it, and store both in one transaction;
        ``hello`` is the id (:meth:`hello_id`) of the Hello the frame was made under.

        Raises :class:`SpoolFull` (nothing stored, seq not used) when the frame fits only by
        evicting frames more important than itself.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # the stored counter too: `semcom edge spool quarantine retry` may have taken
                # seqs while this process ran
                seq = max(self._next_seq, self._counter("next_seq", 1))
                frame = make_frame(seq)
                size = len(frame)
                self._make_room(priority, size)
                self._db.execute(
                    "INSERT INTO frames (seq, priority, size, frame, created, hello) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, int(priority), size, frame, time.time(), hello),
                )
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES ('next_seq', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (seq + 1,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_totals()
                raise
            self._next_seq = seq + 1
            self._bytes += size
            self._count += 1
            return seq

    def _make_room(self, priority: Priority, size: int) -> None:
        if size > self.max_bytes:
            raise SpoolFull(f"frame of {size} bytes exceeds the spool bound of {self.max_bytes}")
        while self._bytes + size > self.max_bytes:
            victim = self._db.execute(
                "SELECT seq, priority, size FROM frames WHERE priority >= ? "
                "ORDER BY priority DESC, seq ASC LIMIT 1",
                (int(priority),),
            ).fetchone()
            if victim is None:
                raise SpoolFull(
                    f"spool full ({self._bytes} of {self.max_bytes} bytes) with messages more "
                    f"important than {priority.name}"
                )
            self._db.execute("DELETE FROM frames WHERE seq = ?", (victim[0],))
            self._bytes -= int(victim[2])
            self._count -= 1
            name = Priority(victim[1]).name
            self.dropped[name] += 1
            logger.warning("spool full: dropped %s message seq %d", name, victim[0])

    def _reload_totals(self) -> None:
        row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM frames").fetchone()
        self._bytes, self._count = int(row[0]), int(row[1])

    def first_seq(self) -> int | None:
        """The lowest pending seq (None when nothing is pending)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(seq) FROM frames").fetchone()
        return int(row[0]) if row[0] is not None else None

    def oldest_age(self) -> float:
        """Seconds the oldest pending frame has waited (0 when none is pending)."""
        with self._lock:
            row = self._db.execute("SELECT created FROM frames ORDER BY seq LIMIT 1").fetchone()
        return max(0.0, time.time() - float(row[0])) if row and row[0] else 0.0

    def peek(
        self,
        max_bytes: int,
        exclude: Iterable[int] = (),
        hellos: Collection[int | None] | None = ANY_HELLO,
    ) -> list[tuple[int, bytes]]:
        """Frames to send next, most important and oldest first, up to ``max_bytes`` in total
        (at least one frame when any is pending); ``exclude`` skips seqs already in flight;
        ``hellos``: only frames made under these Hello ids (None in it: an unknown Hello).
        Frames spooled under an earlier protocol version of the same data layout come
        re-stamped with the current one (:func:`shared.codec.restamp`)."""
        skip = set(exclude)
        out: list[tuple[int, bytes]] = []
        total = 0
        where, args = _hello_filter(hellos)
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, frame FROM frames {where} ORDER BY priority, seq", args
            )
            for seq, frame in rows:
                if seq in skip:
                    continue
                if out and total + len(frame) > max_bytes:
                    break
                out.append((int(seq), restamp(bytes(frame))))  # spooled by an older edge
                total += len(frame)
        return out

    def ack(self, seqs: Iterable[int]) -> int:
        """Forget acknowledged frames (repeats are harmless); returns how many were removed."""
        ids = [(int(s),) for s in seqs]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            removed = 0
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                placeholders = ",".join("?" * len(part))
                cur = self._db.execute(
                    f"DELETE FROM frames WHERE seq IN ({placeholders})", [p[0] for p in part]
                )
                removed += cur.rowcount
            self._db.execute("COMMIT")
            self._reload_totals()
        return removed

    def ack_through(self, seq: int) -> int:
        """Cumulative acknowledgement: forget every frame with a seq up to ``seq``."""
        with self._lock:
            cur = self._db.execute("DELETE FROM frames WHERE seq <= ?", (int(seq),))
            self._reload_totals()
            return cur.rowcount

    def renumber(self, first_seq: int, reencode: Callable[[bytes, int], bytes]) -> int:
        """Give every pending frame a new seq from ``first_seq`` on (same order), rebuilt with
        ``reencode(frame, seq)``, and continue numbering after them. For a spool that was
        reset while the cloud kept the old numbers: without this, the cloud would take new
        frames for repeats of old ones. The new seqs start above every quarantined one, so a
        renumbered frame never takes the seq of a refused frame kept aside (the quarantine is
        keyed by seq). Returns how many frames were renumbered."""
        with self.transaction() as db:
            kept = db.execute("SELECT COALESCE(MAX(seq), 0) FROM quarantine").fetchone()[0]
            first_seq = max(first_seq, int(kept) + 1)
            rows = db.execute(
                "SELECT seq, priority, frame, created, hello FROM frames ORDER BY seq"
            )
            renamed = [
                (first_seq + i, prio, reencode(bytes(frame), first_seq + i), created, hello)
                for i, (_, prio, frame, created, hello) in enumerate(rows.fetchall())
            ]
            db.execute("DELETE FROM frames")
            db.executemany(
                "INSERT INTO frames (seq, priority, size, frame, created, hello) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(seq, prio, len(f), f, c, h) for seq, prio, f, c, h in renamed],
            )
            self._next_seq = first_seq
            self.allocate(len(renamed))
        return len(renamed)

    # ------------------------------------------------------------------ refused frames

    def quarantine(
        self, reason: str, seqs: Iterable[int] = (), hellos: Collection[int | None] = ()
    ) -> int:
        """Move frames the cloud refused (by seq, or every frame made under ``hellos``) aside
        with the cloud's ``reason``: they are not sent again until an operator retries them
        (``semcom edge spool quarantine``). Returns how many moved."""
        ids = [int(s) for s in seqs]
        with self.transaction() as db:
            moved = 0
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                moved += self._move_aside(db, f"seq IN ({','.join('?' * len(part))})", part, reason)
            if hellos:
                where, args = _hello_filter(hellos)
                moved += self._move_aside(db, where.removeprefix("WHERE "), args, reason)
        return moved

    @staticmethod
    def _move_aside(db: sqlite3.Connection, where: str, args: Sequence[object], reason: str) -> int:
        db.execute(
            "INSERT OR REPLACE INTO quarantine "
            "(seq, priority, size, frame, created, hello, reason, quarantined) "
            f"SELECT seq, priority, size, frame, created, hello, ?, ? FROM frames WHERE {where}",
            [reason, time.time(), *args],
        )
        return int(db.execute(f"DELETE FROM frames WHERE {where}", args).rowcount)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The spool's connection in one write transaction, under its lock (for
        :mod:`edge.spool_admin`); totals are reloaded afterwards."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._reload_totals()

    def allocate(self, count: int) -> int:
        """Reserve ``count`` new seqs (inside :meth:`transaction`); returns the first. Should
        the transaction roll back, the seqs stay unused: a gap, never a seq used twice."""
        first = self._next_seq
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES ('next_seq', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (first + count,),
        )
        self._next_seq = first + count
        return first

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _hello_filter(hellos: Collection[int | None] | None) -> tuple[str, list[object]]:
    """A WHERE clause selecting frames made under ``hellos`` (None: no filter)."""
    if hellos is None:
        return "", []
    ids = [h for h in hellos if h is not None]
    terms = [f"hello IN ({','.join('?' * len(ids))})"] if ids else []
    if None in hellos:
        terms.append("hello IS NULL")
    return f"WHERE ({' OR '.join(terms) or '0'})", list(ids)
