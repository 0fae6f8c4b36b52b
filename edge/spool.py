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
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from enum import IntEnum
from pathlib import Path

from shared.messages import Detections, Embedding, EmitReason, FrameCounts, Message, TrackEnd

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
    if isinstance(message, TrackEnd):
        return Priority.TRACK_END
    if isinstance(message, Detections):
        return Priority.BOXES
    if isinstance(message, FrameCounts):
        return Priority.COUNTS
    return Priority.FIRST_SIGHT  # anything else that is spooled is rare and important


class SpoolFull(Exception):
    """A frame that cannot be stored: everything spooled is at least as important."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    size INTEGER NOT NULL,
    frame BLOB NOT NULL,
    created REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS frames_by_priority ON frames (priority, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


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
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(frames)")}
        if "created" not in columns:  # a spool written before frames had a creation time
            self._db.execute("ALTER TABLE frames ADD COLUMN created REAL NOT NULL DEFAULT 0")
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

    def append(self, priority: Priority, make_frame: Callable[[int], bytes]) -> int:
        """Allocate the next seq, build the frame with it, and store both in one transaction.

        Raises :class:`SpoolFull` (nothing stored, seq not used) when the frame fits only by
        evicting frames more important than itself.
        """
        with self._lock:
            seq = self._next_seq
            frame = make_frame(seq)
            size = len(frame)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._make_room(priority, size)
                self._db.execute(
                    "INSERT INTO frames (seq, priority, size, frame, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (seq, int(priority), size, frame, time.time()),
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

    def oldest_age(self) -> float:
        """Seconds the oldest pending frame has waited (0 when none is pending)."""
        with self._lock:
            row = self._db.execute("SELECT created FROM frames ORDER BY seq LIMIT 1").fetchone()
        return max(0.0, time.time() - float(row[0])) if row and row[0] else 0.0

    def peek(self, max_bytes: int, exclude: Iterable[int] = ()) -> list[tuple[int, bytes]]:
        """Frames to send next, most important and oldest first, up to ``max_bytes`` in total
        (at least one frame when any is pending); ``exclude`` skips seqs already in flight."""
        skip = set(exclude)
        out: list[tuple[int, bytes]] = []
        total = 0
        with self._lock:
            rows = self._db.execute("SELECT seq, frame FROM frames ORDER BY priority, seq")
            for seq, frame in rows:
                if seq in skip:
                    continue
                if out and total + len(frame) > max_bytes:
                    break
                out.append((int(seq), bytes(frame)))
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
        frames for repeats of old ones. Returns how many frames were renumbered."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT seq, priority, frame, created FROM frames ORDER BY seq"
                )
                renamed = [
                    (first_seq + i, prio, reencode(bytes(frame), first_seq + i), created)
                    for i, (_, prio, frame, created) in enumerate(rows.fetchall())
                ]
                self._db.execute("DELETE FROM frames")
                self._db.executemany(
                    "INSERT INTO frames (seq, priority, size, frame, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(seq, prio, len(frame), frame, c) for seq, prio, frame, c in renamed],
                )
                next_seq = first_seq + len(renamed)
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES ('next_seq', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (next_seq,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._reload_totals()
            self._next_seq = next_seq
            return len(renamed)

    def close(self) -> None:
        with self._lock:
            self._db.close()
