"""The spool's identity, the Hello kept with each frame, the quarantine, and the edge's rule
for a HelloAck (docs/wire.md, "A reset or replaced spool"), without a cloud."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

from edge.config import UplinkConfig
from edge.groups import UNKNOWN_HELLO, pick
from edge.spool import Priority, Spool
from edge.spool_admin import drop, quarantined, retry, stats
from edge.uplink import Uplink
from shared.codec import decode, encode
from shared.messages import CameraInfo, CodecRef, Envelope, FrameCounts, Hello, HelloAck

VIT = Hello(
    "0.1.0",
    "yolo11n.onnx",
    "vit_small_patch16_224",
    384,
    (CodecRef("int8", bytes(32)),),
    (CameraInfo("cam-7", 1280, 720, 25.0),),
    False,
)
OTHER = dataclasses.replace(VIT, encoder="vit_base_patch16_224", embedding_dim=768)


def counts(n: int):  # type: ignore[no-untyped-def]
    return lambda seq: encode(Envelope("e", seq, 1_000 + n, 1_000 + n, FrameCounts("c", {2: n})))


def test_a_spool_file_has_one_incarnation_for_life(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    first = spool.incarnation
    assert len(first) == 32
    spool.close()
    assert Spool(tmp_path / "s.db").incarnation == first  # kept in the file
    assert Spool(tmp_path / "other.db").incarnation != first  # a new file is a new spool


def test_an_old_spool_file_gets_an_incarnation_and_unknown_hellos(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the schema of spool files before this change
        db.executescript(
            "CREATE TABLE frames (seq INTEGER PRIMARY KEY, priority INTEGER NOT NULL, "
            "size INTEGER NOT NULL, frame BLOB NOT NULL, created REAL NOT NULL DEFAULT 0);"
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        )
        data = counts(0)(1)
        db.execute("INSERT INTO frames VALUES (1, 5, ?, ?, 0)", (len(data), data))
        db.execute("INSERT INTO counters VALUES ('next_seq', 2)")
    spool = Spool(path)
    assert len(spool.incarnation) == 32
    assert [(g.hello, g.frames) for g in spool.groups()] == [(None, 1)]
    # Drained with no live pipeline: quarantined with a reason, not sent under a guess.
    group, moved = pick(spool, None)
    assert (group, moved) == (None, 1)
    [item] = quarantined(spool)
    assert (item.seq, item.reason) == (1, UNKNOWN_HELLO)
    # Retried, and with a live pipeline: they go under its Hello, the only one there is.
    assert retry(spool) == 1
    group, moved = pick(spool, VIT)
    assert group is not None
    assert (group.hellos, group.live, moved) == ((spool.hello_id(VIT), None), True, 0)
    assert [decode(f).seq for _, f in spool.peek(1 << 20, hellos=group.hellos)] == [2]
    spool.close()


def test_frames_keep_their_hello_and_a_session_takes_one_group(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    vit, other = spool.hello_id(VIT), spool.hello_id(OTHER)
    assert spool.hello_id(dataclasses.replace(VIT, spool_id="x")) == vit  # spool id aside
    assert spool.hello(vit) == VIT
    spool.append(Priority.COUNTS, counts(1), vit)
    spool.append(Priority.FIRST_SIGHT, counts(2), other)
    spool.append(Priority.COUNTS, counts(3), vit)
    assert [(g.hello, g.frames) for g in spool.groups()] == [(other, 1), (vit, 2)]
    assert [s for s, _ in spool.peek(1 << 20, hellos=(vit,))] == [1, 3]
    assert [s for s, _ in spool.peek(1 << 20, hellos=(None,))] == []
    # Drain (no live Hello): the most important frame's group first, announced as kept.
    group, _ = pick(spool, None)
    assert group is not None
    assert (group.hellos, group.live) == ((other,), False)
    assert group.hello == dataclasses.replace(OTHER, spool_id=spool.incarnation)
    # Live: an older group still goes first, under its own Hello; then the live one.
    spool.ack([2])
    group, _ = pick(spool, VIT)
    assert group is not None
    assert (group.hellos, group.live) == ((vit, None), True)
    spool.ack([1, 3])
    group, _ = pick(spool, OTHER)  # nothing pending: the live pipeline's Hello
    assert group is not None
    assert (group.hello.encoder, group.live) == (OTHER.encoder, True)


def test_quarantine_keeps_refused_frames_until_retried_or_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    vit = spool.hello_id(VIT)
    for n in range(4):
        spool.append(Priority.COUNTS, counts(n), vit)
    assert spool.quarantine("UNKNOWN_CODEC: embedding names codec 0xdead", [2]) == 1
    assert (spool.pending, spool.quarantined) == (3, 1)
    assert [s for s, _ in spool.peek(1 << 20)] == [1, 3, 4]  # never sent again by itself
    [item] = quarantined(spool)
    assert (item.seq, item.type, item.hello) == (2, "FrameCounts", vit)
    assert item.reason.startswith("UNKNOWN_CODEC")
    info = stats(spool)
    assert (info["pending"], info["quarantined"], info["incarnation"]) == (
        3,
        1,
        spool.incarnation,
    )
    assert info["by_hello"][0]["encoder"] == "vit_small_patch16_224"
    # Retry: back in the queue under a new seq (the message is the same), same Hello.
    assert retry(spool, [2]) == 1
    assert spool.quarantined == 0
    [(seq, frame)] = [(s, f) for s, f in spool.peek(1 << 20) if s not in (1, 3, 4)]
    assert seq == 5
    assert decode(frame).seq == 5
    assert decode(frame).message == FrameCounts("c", {2: 1})
    assert spool.append(Priority.COUNTS, counts(9), vit) == 6  # numbering goes on after it
    # A whole group refused (its Hello), then dropped for good.
    assert spool.quarantine("CODEC_MISMATCH: x", hellos=(vit,)) == 5
    assert spool.pending == 0
    assert drop(spool, [1]) == 1
    assert drop(spool) == 4
    assert spool.quarantined == 0


def _uplink(spool: Spool) -> Uplink:
    config = UplinkConfig.model_validate({"cloud": "http://127.0.0.1:9", "token": "t"})
    return Uplink(config, "e", spool, lambda: None)


def _pending_seqs(spool: Spool) -> list[int]:
    return [s for s, _ in spool.peek(1 << 30)]


def test_a_hello_ack_of_another_spool_renumbers_and_never_drops(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "new.db")
    for n in range(10):
        spool.append(Priority.COUNTS, counts(n), spool.hello_id(VIT))
    uplink = _uplink(spool)
    # The cloud stored seqs up to 6 (watermark 4) of an earlier spool of this edge.
    ack = HelloAck("s", 4, 65_536, "0123456789abcdef0123456789abcdef", 7)
    asyncio.run(uplink._on_hello_ack(ack))
    assert spool.pending == 10
    assert _pending_seqs(spool) == list(range(7, 17))
    # The edge crashes before anything is stored: the same answer again changes nothing.
    asyncio.run(uplink._on_hello_ack(ack))
    assert _pending_seqs(spool) == list(range(7, 17))
    assert spool.next_seq == 17
    # Once the cloud stored frames of this spool, its watermark names this spool's seqs.
    asyncio.run(uplink._on_hello_ack(HelloAck("s", 9, 65_536, spool.incarnation, 12)))
    assert _pending_seqs(spool) == list(range(10, 17))


def test_a_fresh_cloud_or_the_same_spool_changes_nothing_it_should_not(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    for n in range(5):
        spool.append(Priority.COUNTS, counts(n), spool.hello_id(VIT))
    uplink = _uplink(spool)
    asyncio.run(uplink._on_hello_ack(HelloAck("s", 0, 65_536, "", 1)))  # cloud knows nothing
    assert _pending_seqs(spool) == [1, 2, 3, 4, 5]
    # A copy of this spool restored from a backup: the cloud stored seqs it never numbered.
    asyncio.run(uplink._on_hello_ack(HelloAck("s", 3, 65_536, spool.incarnation, 9)))
    assert spool.pending == 5  # forgets nothing: they may be new messages under old numbers
    assert _pending_seqs(spool) == [9, 10, 11, 12, 13]


def test_renumbering_never_takes_the_seq_of_a_quarantined_frame(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "new.db")
    vit = spool.hello_id(VIT)
    for n in range(6):
        spool.append(Priority.COUNTS, counts(n), vit)
    # The cloud refused seq 5 (kept aside); then a HelloAck of another spool asks for
    # renumbering from 3, which would give a pending frame the refused frame's seq 5.
    assert spool.quarantine("INTERNAL: storing failed", [5]) == 1
    asyncio.run(_uplink(spool)._on_hello_ack(HelloAck("s", 2, 65_536, "f" * 32, 3)))
    assert 5 not in _pending_seqs(spool)
    # Refusing every renumbered frame too keeps all six messages, none overwritten.
    assert spool.quarantine("INTERNAL: storing failed", _pending_seqs(spool)) == 5
    assert len(quarantined(spool)) == 6
    with sqlite3.connect(tmp_path / "new.db") as db:
        frames = [
            decode(bytes(row[0])).message for row in db.execute("SELECT frame FROM quarantine")
        ]
    assert sorted(m.counts[2] for m in frames if isinstance(m, FrameCounts)) == [0, 1, 2, 3, 4, 5]
