"""Bundles on a real link: messages made within ``uplink.bundle_linger_ms`` of each other go to
the cloud in one bundle frame, each stored once by its own seq."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.config import UplinkConfig
from edge.loadgen import CodecChoice
from edge.pipeline import Outbox
from edge.sink import SpoolSink
from edge.spool import Spool
from edge.transport import Transport, make_transport
from edge.uplink import Uplink
from edge.uplink_thread import UplinkThread
from shared.bundle import BUNDLE_TYPE, decode_frame
from shared.messages import FrameCounts
from shared.vectors import create_codec
from tests.uplink.conftest import EDGE, Cloud, content, uplink_config, wait_for
from tests.uplink.test_rate_budget import Counting

pytestmark = pytest.mark.uplink

MESSAGES = 12
GAP_S = 0.1


class Keeping(Counting):
    """The real transport, keeping every data-channel message it sends."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.data: list[bytes] = []

    async def send_data(self, data: bytes) -> None:
        self.data.append(data)
        await super().send_data(data)


def _run(cloud: Cloud, tmp_path: Path, linger_ms: float) -> tuple[list[bytes], Spool]:
    config: UplinkConfig = uplink_config(
        cloud, tmp_path, transport="websocket", bundle_linger_ms=linger_ms
    )
    transports: list[Keeping] = []

    def keeping(cfg: UplinkConfig, edge_id: str) -> Transport:
        t = Keeping(make_transport(cfg, edge_id))
        transports.append(t)
        return t

    spool = Spool(config.spool_path, config.spool_max_bytes)
    sink = SpoolSink(spool)
    outbox = Outbox(EDGE, sink)
    choice = CodecChoice([create_codec("f16", 64)])
    outbox.put(time.time_ns() // 1_000, choice.hello("test", "cam-01"), control=True)
    link = Uplink(config, EDGE, spool, lambda: sink.hello, transport_factory=keeping)
    sink.on_append = link.spooled
    thread = UplinkThread(link)
    thread.start()
    try:
        wait_for(lambda: transports and transports[0].first_heard is not None, 30, "a session")
        for i in range(MESSAGES):  # live: one message every 0.1 s
            outbox.put(time.time_ns() // 1_000, FrameCounts("cam-01", {2: i + 1}))
            time.sleep(GAP_S)
        wait_for(lambda: spool.pending == 0, 30, "every message acknowledged")
    finally:
        thread.stop(0.0)
    assert thread.error is None, thread.error
    assert len(transports) == 1
    return transports[0].data, spool


def test_messages_within_the_linger_window_go_in_one_bundle(cloud: Cloud, tmp_path: Path) -> None:
    cloud.start()
    sent, spool = _run(cloud, tmp_path, linger_ms=600.0)
    spool.close()
    # 12 messages over 1.2 s in windows of 0.6 s: two or three bundles, not twelve frames (a
    # window that caught one message may send it alone: a bundle of one is no smaller)
    assert 2 <= len(sent) <= 4, [len(s) for s in sent]
    groups = [decode_frame(data) for data in sent]
    assert all(data[3] == BUNDLE_TYPE for data, g in zip(sent, groups, strict=True) if len(g) > 1)
    assert max(len(g) for g in groups) >= MESSAGES // 3
    seqs = [env.seq for g in groups for env in g]
    assert sorted(seqs) == list(range(1, MESSAGES + 1))
    stored = cloud.stored()
    assert len(stored) == MESSAGES
    assert {content(f)[1] for _, _, f in stored} == {
        repr(FrameCounts("cam-01", {2: i + 1})) for i in range(MESSAGES)
    }


def test_without_linger_each_message_goes_as_soon_as_it_is_spooled(
    cloud: Cloud, tmp_path: Path
) -> None:
    cloud.start()
    sent, spool = _run(cloud, tmp_path, linger_ms=0.0)
    spool.close()
    assert len(sent) >= MESSAGES - 2  # the sender may catch two at once, rarely more
    assert len(cloud.stored()) == MESSAGES
