"""A spool filled by a protocol-2 edge is sent by the upgraded (protocol-3) edge, not stranded."""

from __future__ import annotations

from pathlib import Path

from edge.spool import Priority, Spool, reseq
from shared import limits
from shared.codec import decode, encode
from shared.messages import Envelope, FrameCounts


def _v2(seq: int) -> bytes:
    frame = encode(Envelope("e", seq, 10 + seq, 11 + seq, FrameCounts("cam", {2: seq})))
    return frame[:2] + bytes([2]) + frame[3:]  # as a version-2 edge wrote it


def test_frames_spooled_under_version_2_are_sent_as_version_3(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    try:
        for _ in range(3):
            spool.append(Priority.COUNTS, _v2, None)
        frames = spool.peek(1 << 20)
        assert [seq for seq, _ in frames] == [1, 2, 3]
        for seq, frame in frames:
            assert frame[2] == limits.PROTOCOL_VERSION
            assert decode(frame).message == FrameCounts("cam", {2: seq})
        # Renumbering (a reset spool, see docs/wire.md) reads them too.
        assert decode(reseq(_v2(1), 9)).seq == 9
    finally:
        spool.close()
