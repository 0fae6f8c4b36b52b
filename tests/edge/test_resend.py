"""The strikes of frames in payloads the cloud could not decode (edge.resend): struck frames go
again unbundled, then alone with nothing else in flight, then to the quarantine."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from edge.config import UplinkConfig
from edge.pipeline import Outbox
from edge.resend import MAX_STRIKES, Resends, refuses_payload
from edge.sink import SpoolSink
from edge.spool import Spool
from edge.uplink import Uplink
from shared.messages import Error, ErrorCode, FrameCounts, HelloAck

FRAMES = [(1, b"a"), (2, b"b"), (3, b"c")]


def test_without_strikes_everything_goes_bundled() -> None:
    assert Resends().plan(FRAMES, {7, 8}) == (FRAMES, True)


def test_one_strike_sends_the_frames_again_unbundled() -> None:
    resends = Resends()
    assert resends.strike([2, 9]) == []
    assert resends.plan(FRAMES, set()) == (FRAMES, False)
    resends.clear([2])  # acked
    assert resends.plan(FRAMES, set()) == (FRAMES, True)


def test_two_strikes_send_the_frame_alone_with_nothing_else_in_flight() -> None:
    resends = Resends()
    resends.strike([3])
    resends.strike([3])
    assert resends.plan(FRAMES, {5}) is None  # wait for what is in flight
    assert resends.plan(FRAMES, set()) == ([(3, b"c")], False)
    assert resends.plan([(4, b"d")], {3}) is None  # it is alone in flight: nothing else goes


def test_a_frame_is_given_up_after_max_strikes_and_forgotten() -> None:
    resends = Resends()
    for _ in range(MAX_STRIKES - 1):
        assert resends.strike([3, 4]) == []
        resends.clear([4])
    assert resends.strike([3]) == [3]
    assert len(resends) == 0
    assert resends.strikes(3) == 0


def test_only_a_seq0_bad_message_about_a_payload_sends_frames_again() -> None:
    bad = ErrorCode.BAD_MESSAGE
    assert refuses_payload(Error(bad, "undecodable frame: corrupt zstd body", 0, False))
    assert refuses_payload(Error(bad, "bad batch: truncated varint", 0, False))
    assert not refuses_payload(Error(bad, "frame from edge 'x' in the session of 'y'", 7, False))
    assert not refuses_payload(Error(bad, "CodebookAck: no codebook was offered", 0, False))
    assert not refuses_payload(Error(ErrorCode.OVERLOADED, "ingest queue full", 0, False))


def _spool_with_frames(path: Path, n: int) -> Spool:
    spool = Spool(path)
    outbox = Outbox("edge-r", SpoolSink(spool))
    for i in range(n):
        outbox.put(time.time_ns() // 1_000, FrameCounts("cam", {1: i + 1}))
    return spool


def test_strikes_are_forgotten_when_the_spool_is_renumbered(tmp_path: Path) -> None:
    """After a renumbering (docs/wire.md, "A reset or replaced spool") a struck seq names
    another frame: strikes must not follow the number."""
    spool = _spool_with_frames(tmp_path / "spool.db", 3)
    config = UplinkConfig.model_validate(
        {"cloud": "http://127.0.0.1:9", "token": "t", "spool_path": spool.path}
    )
    link = Uplink(config, "edge-r", spool, lambda: None)
    try:
        link.resends.strike([2])
        # the cloud last stored this very spool: nothing renumbered, the strike stays
        asyncio.run(link._on_hello_ack(HelloAck("s", 0, 65_536, spool.incarnation, 1)))
        assert link.resends.strikes(2) == 1
        # another spool's seqs up to 99 are stored: this one's frames are renumbered
        asyncio.run(link._on_hello_ack(HelloAck("s", 99, 65_536, "other", 100)))
        assert spool.first_seq() == 100
        assert len(link.resends) == 0
    finally:
        spool.close()
