"""A payload the cloud cannot decode at all (a corrupt bundle body) over a real link: the cloud
answers a seq-0 ``BAD_MESSAGE``, and the edge sends the frames that were in flight again at
once, in the same session, unbundled; a frame the cloud can never decode ends in the
quarantine after a bounded number of tries (docs/wire.md, "Seq 0, refusals and errors").

The corruption is the test's own: a wrapper around the real transport spoils the bytes it is
given to send, as the thread-unsafe compressor did under load (session 10's load bench).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.config import UplinkConfig
from edge.spool import Spool
from edge.spool_admin import quarantined
from edge.transport import Transport, make_transport
from edge.uplink import Uplink
from edge.uplink_thread import UplinkThread
from shared.bundle import BUNDLE_TYPE, decode_frame
from shared.codec import decode
from shared.framing import BATCH_MAGIC, pack_batch, unpack_batch
from tests.uplink.conftest import Cloud, content, uplink_config, wait_for
from tests.uplink.spooled import fill_spool
from tests.uplink.test_rate_budget import Counting

pytestmark = pytest.mark.uplink

#: A reconnect would only come after this long: a drain that recovers well before it did so
#: in the session that got the refusal.
BACKOFF_S = 60.0
#: What the drain of a few hundred frames may take on a loopback link (it takes about 1 s).
BOUND_S = 15.0


def _spoil(frame: bytes) -> bytes:
    """The frame with its body declared zstd-compressed but not a zstd frame: the cloud
    cannot decode it (`corrupt zstd body`), nor tell its seqs."""
    return frame[:4] + bytes([frame[4] | 1]) + b"\xde\xad\xbe\xef" + frame[5:]


class Spoiling(Counting):
    """The real transport; spoils the first bundle it is given (``once``), or every frame of
    seq ``always`` wherever it travels (alone, in a batch, in a bundle)."""

    def __init__(self, inner: Transport, once: list[bool], always: int | None) -> None:
        super().__init__(inner)
        self.once = once
        self.always = always
        self.spoiled: list[list[int]] = []  # the seqs of each spoiled payload

    async def send_data(self, data: bytes) -> None:
        if self.once and not self.once[0] and data[3] == BUNDLE_TYPE:
            self.once[0] = True
            self.spoiled.append([env.seq for env in decode_frame(data)])
            data = _spoil(data)
        elif self.always is not None:
            data = self._spoil_seq(data, self.always)
        await super().send_data(data)

    def _spoil_seq(self, data: bytes, seq: int) -> bytes:
        if data.startswith(BATCH_MAGIC):
            frames = unpack_batch(data)
            if any(decode(f).seq == seq for f in frames):
                self.spoiled.append([seq])
                return pack_batch(_spoil(f) if decode(f).seq == seq else f for f in frames)
            return data
        seqs = [env.seq for env in decode_frame(data)]
        if seq in seqs:
            self.spoiled.append(seqs)
            return _spoil(data)
        return data


def _drain(
    cloud: Cloud, tmp_path: Path, transport: str, once: bool, always: int | None = None
) -> tuple[set[tuple[int, str]], int, Spoiling, Uplink, float]:
    spool_path = tmp_path / "spool.db"
    made = fill_spool(spool_path, seconds=3.0)
    config: UplinkConfig = uplink_config(
        cloud,
        tmp_path,
        transport=transport,
        spool_path=spool_path,
        reconnect_initial_s=BACKOFF_S,
        reconnect_max_s=BACKOFF_S,
        batch_bytes=2_000,  # several payloads: the spoiled one is not the whole spool
    )
    transports: list[Spoiling] = []
    flag = [False] if once else []

    def spoiling(cfg: UplinkConfig, edge_id: str) -> Transport:
        t = Spoiling(make_transport(cfg, edge_id), flag, always)
        transports.append(t)
        return t

    spool = Spool(config.spool_path, config.spool_max_bytes)
    last = spool.next_seq - 1
    link = Uplink(config, "edge-t", spool, lambda: None, transport_factory=spoiling)
    thread = UplinkThread(link)
    start = time.monotonic()
    thread.start()
    try:
        wait_for(lambda: spool.pending == 0, BOUND_S, "the spool to drain")
        took = time.monotonic() - start
    finally:
        thread.stop(0.0)
        spool.close()
    assert thread.error is None, thread.error
    assert len(transports) == 1, "the edge reconnected"
    return made, last, transports[0], link, took


@pytest.mark.parametrize("transport", ["websocket", "webrtc"])
def test_an_undecodable_bundle_is_sent_again_at_once_in_the_same_session(
    cloud: Cloud, tmp_path: Path, transport: str
) -> None:
    cloud.start()
    made, last, sent, link, took = _drain(cloud, tmp_path, transport, once=True)
    assert len(sent.spoiled) == 1, sent.spoiled
    assert 1 < len(sent.spoiled[0]) < last, sent.spoiled
    stored = cloud.stored()
    seqs = [seq for seq, _, _ in stored]
    assert sorted(seqs) == list(range(1, last + 1)), "a seq was lost or stored twice"
    assert set(sent.spoiled[0]) <= set(seqs), "the spoiled bundle's frames were not resent"
    assert {content(f) for _, _, f in stored} == made, "a message was lost"
    assert link.stats.quarantined == 0
    assert link.stats.resent_frames >= len(sent.spoiled[0])
    assert took < BOUND_S


def test_a_frame_the_cloud_can_never_decode_ends_in_the_quarantine(
    cloud: Cloud, tmp_path: Path
) -> None:
    cloud.start()
    bad = 5
    _made, last, sent, link, took = _drain(cloud, tmp_path, "websocket", once=False, always=bad)
    # tries: in a bundle (or batch), then unbundled, then alone: a bounded number
    assert 2 <= len(sent.spoiled) <= 4, sent.spoiled
    stored = cloud.stored()
    seqs = [seq for seq, _, _ in stored]
    assert sorted(seqs) == [s for s in range(1, last + 1) if s != bad], "lost or doubled"
    spool = Spool(tmp_path / "spool.db")
    try:
        aside = quarantined(spool)
    finally:
        spool.close()
    assert [q.seq for q in aside] == [bad]
    assert aside[0].reason.startswith("BAD_MESSAGE: the cloud could not decode this frame")
    assert took < BOUND_S
    assert link.stats.quarantined == 1


def test_frames_a_killed_cloud_could_not_decode_are_stored_once_after_its_restart(
    cloud: Cloud, tmp_path: Path
) -> None:
    """The cloud is SIGKILLed just after it refused a spoiled bundle, and restarted: the
    struck frames (still to go unbundled) and the rest are stored exactly once."""
    cloud.start()
    spool_path = tmp_path / "spool.db"
    made = fill_spool(spool_path, seconds=3.0)
    config = uplink_config(
        cloud,
        tmp_path,
        transport="websocket",
        spool_path=spool_path,
        batch_bytes=4_000,
        max_rate=64_000,  # a few seconds of sending: the kill comes mid-stream
    )
    transports: list[Spoiling] = []
    flag = [False]

    def spoiling(cfg: UplinkConfig, edge_id: str) -> Transport:
        t = Spoiling(make_transport(cfg, edge_id), flag, None)
        transports.append(t)
        return t

    spool = Spool(config.spool_path, config.spool_max_bytes)
    last = spool.next_seq - 1
    link = Uplink(config, "edge-t", spool, lambda: None, transport_factory=spoiling)
    thread = UplinkThread(link)
    thread.start()
    try:
        wait_for(lambda: link.stats.resent_frames > 0, 30, "the spoiled bundle's refusal")
        cloud.kill()
        left = spool.pending
        cloud.start()
        wait_for(lambda: spool.pending == 0, 60, "the spool to drain after the restart")
    finally:
        thread.stop(0.0)
        spool.close()
    assert thread.error is None, thread.error
    assert left > 0, "the kill did not come mid-stream"
    assert len(transports) >= 2, "the edge never reconnected"
    stored = cloud.stored()
    seqs = [seq for seq, _, _ in stored]
    assert sorted(seqs) == list(range(1, last + 1)), "a seq was lost or stored twice"
    assert {content(f) for _, _, f in stored} == made
    assert link.stats.quarantined == 0
