"""The durable spool: persistence across restarts and crashes, priorities, bound, acks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge.spool import Priority, Spool, SpoolFull, priority_of
from shared.geometry import Box
from shared.messages import (
    Detections,
    Embedding,
    EmitReason,
    FrameCounts,
    TrackEnd,
    TrackSummary,
)
from shared.pathwire import TrackPath


def frame(tag: bytes, size: int = 100):  # type: ignore[no-untyped-def]
    return lambda seq: tag + seq.to_bytes(4, "little") + b"\x00" * (size - len(tag) - 4)


def test_seq_and_frames_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    seqs = [spool.append(Priority.COUNTS, frame(b"c")) for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    spool.ack([1, 2])
    spool.close()
    again = Spool(tmp_path / "s.db")
    assert again.pending == 3
    assert again.pending_bytes == 300
    assert again.append(Priority.COUNTS, frame(b"c")) == 6  # numbering continues, never reused
    assert [s for s, _ in again.peek(10_000)] == [3, 4, 5, 6]
    again.ack_through(6)
    again.close()
    assert Spool(tmp_path / "s.db").next_seq == 7  # even with nothing pending


def test_reading_order_is_priority_then_age(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    order = [
        Priority.COUNTS,
        Priority.FIRST_SIGHT,
        Priority.EMBEDDING_UPDATE,
        Priority.FIRST_SIGHT,
        Priority.TRACK_END,
    ]
    for p in order:
        spool.append(p, frame(b"x"))
    assert [s for s, _ in spool.peek(10_000)] == [2, 4, 5, 3, 1]
    assert [s for s, _ in spool.peek(250)] == [2, 4]  # byte budget
    assert [s for s, _ in spool.peek(10)] == [2]  # always at least one
    assert [s for s, _ in spool.peek(10_000, exclude=[2, 4])] == [5, 3, 1]
    assert spool.peek(10_000)[0][1].startswith(b"x\x02\x00\x00\x00")


def test_acks_are_idempotent(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    for _ in range(4):
        spool.append(Priority.TRACK_END, frame(b"t"))
    assert spool.ack([2, 3]) == 2
    assert spool.ack([2, 3]) == 0
    assert spool.ack_through(1) == 1
    assert [s for s, _ in spool.peek(10_000)] == [4]


def test_bound_drops_least_important_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=500)
    for _ in range(3):
        spool.append(Priority.COUNTS, frame(b"c"))  # seqs 1-3
    spool.append(Priority.EMBEDDING_UPDATE, frame(b"u"))  # 4
    spool.append(Priority.FIRST_SIGHT, frame(b"f"))  # 5: spool now full (500 bytes)
    spool.append(Priority.FIRST_SIGHT, frame(b"f"))  # 6 evicts count 1
    spool.append(Priority.TRACK_END, frame(b"t"))  # 7 evicts count 2
    assert spool.dropped == {"COUNTS": 2}
    assert sorted(s for s, _ in spool.peek(10_000)) == [3, 4, 5, 6, 7]
    spool.append(Priority.COUNTS, frame(b"c"))  # 8 evicts the older count 3 (same priority)
    assert spool.dropped["COUNTS"] == 3
    spool.append(Priority.FIRST_SIGHT, frame(b"f"))  # 9 evicts count 8 before the update
    assert spool.dropped == {"COUNTS": 4}
    spool.append(Priority.FIRST_SIGHT, frame(b"f"))  # 10 evicts the embedding update 4
    spool.append(Priority.FIRST_SIGHT, frame(b"f"))  # 11 evicts the track end 7
    assert spool.dropped == {"COUNTS": 4, "EMBEDDING_UPDATE": 1, "TRACK_END": 1}
    assert sorted(s for s, _ in spool.peek(10_000)) == [5, 6, 9, 10, 11]
    with pytest.raises(SpoolFull, match="more important than COUNTS"):
        spool.append(Priority.COUNTS, frame(b"c"))
    with pytest.raises(SpoolFull, match="exceeds the spool bound"):
        spool.append(Priority.FIRST_SIGHT, frame(b"f", 600))
    assert spool.pending_bytes <= 500
    before = spool.next_seq
    assert spool.append(Priority.FIRST_SIGHT, frame(b"f")) == before  # refused seqs not used


def test_committed_frames_survive_a_killed_process(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from edge.spool import Priority, Spool
        spool = Spool(Path({str(tmp_path / "k.db")!r}))
        for i in range(200):
            spool.append(Priority.FIRST_SIGHT, lambda seq: b"frame" + seq.to_bytes(4, "little"))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9
    spool = Spool(tmp_path / "k.db")
    assert spool.pending == 200
    assert spool.next_seq == 201


def test_priorities_of_messages() -> None:
    box = Box(0, 0, 0.1, 0.1)
    first = Embedding("c", 1, EmitReason.FIRST_SIGHT, 2, 0.5, box, 1, b"x")
    drift = Embedding("c", 1, EmitReason.DRIFT, 2, 0.5, box, 1, b"x")
    assert priority_of(first) is Priority.FIRST_SIGHT
    assert priority_of(drift) is Priority.EMBEDDING_UPDATE
    assert priority_of(TrackEnd("c", 1, 0, 1, 2, {}, ())) is Priority.TRACK_END
    summary = TrackSummary("c", 1, 0, 1, 2, {}, False, TrackPath(16, ()))
    assert priority_of(summary) is Priority.TRACK_END
    assert priority_of(Detections("c", (), (), (), ())) is Priority.BOXES
    assert priority_of(FrameCounts("c", {})) is Priority.COUNTS


def test_renumber_after_a_reset_spool_keeps_order_and_content(tmp_path: Path) -> None:
    from shared.codec import decode, encode
    from shared.messages import Envelope, FrameCounts

    spool = Spool(tmp_path / "s.db")

    def frame(seq: int, n: int) -> bytes:
        return encode(Envelope("e", seq, 1_000 + n, 1_000 + n, FrameCounts("cam", {2: n})))

    for n in range(3):
        spool.append(Priority.COUNTS, lambda seq, n=n: frame(seq, n))
    assert spool.oldest_age() >= 0.0

    def reseq(data: bytes, seq: int) -> bytes:
        import dataclasses

        return encode(dataclasses.replace(decode(data), seq=seq))

    assert spool.renumber(101, reseq) == 3
    frames = spool.peek(1 << 20)
    assert [s for s, _ in frames] == [101, 102, 103]
    assert [decode(f).seq for _, f in frames] == [101, 102, 103]
    assert [decode(f).message.counts for _, f in frames] == [{2: 0}, {2: 1}, {2: 2}]
    assert spool.append(Priority.COUNTS, lambda seq: frame(seq, 9)) == 104
    spool.close()
    assert Spool(tmp_path / "s.db").next_seq == 105
