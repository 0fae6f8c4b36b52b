"""A session ends to announce another Hello only when frames of another Hello wait: a frame of
its own group spooled just after the sender's read is no reason to reconnect (a WebRTC session
costs a handshake)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.config import UplinkConfig
from edge.loadgen import CodecChoice
from edge.pipeline import Outbox
from edge.sink import SpoolSink
from edge.spool import Spool
from edge.transport import Transport, make_transport
from edge.uplink import Uplink
from edge.uplink_thread import UplinkThread
from shared.messages import FrameCounts
from shared.vectors import create_codec
from tests.uplink.conftest import EDGE, Cloud, uplink_config, wait_for

pytestmark = pytest.mark.uplink


class RacingSpool(Spool):
    """A spool where a new frame arrives right after a read that found nothing to send while
    nothing was in flight (the sender's idle moment)."""

    race: Callable[[], None] | None = None
    raced = 0

    def peek(self, max_bytes: int, exclude: Any = (), *args: Any) -> list[tuple[int, bytes]]:
        out = super().peek(max_bytes, exclude, *args)
        if not out and not exclude and self.race is not None and self.raced < 8:
            self.raced += 1
            self.race()
        return out


def test_a_frame_of_the_sessions_own_hello_does_not_end_the_session(
    cloud: Cloud, tmp_path: Path
) -> None:
    cloud.start()
    config: UplinkConfig = uplink_config(cloud, tmp_path, transport="websocket")
    sessions: list[Transport] = []

    def counting(cfg: UplinkConfig, edge_id: str) -> Transport:
        sessions.append(make_transport(cfg, edge_id))
        return sessions[-1]

    spool = RacingSpool(config.spool_path, config.spool_max_bytes)
    sink = SpoolSink(spool)
    outbox = Outbox(EDGE, sink)
    outbox.put(
        time.time_ns() // 1_000,
        CodecChoice([create_codec("f16", 64)]).hello("t", "c"),
        control=True,
    )

    def put() -> None:
        outbox.put(time.time_ns() // 1_000, FrameCounts("c", {2: 1}))

    for _ in range(5):
        put()
    link = Uplink(config, EDGE, spool, lambda: sink.hello, transport_factory=counting)
    sink.on_append = link.spooled
    spool.race = put
    thread = UplinkThread(link)
    thread.start()
    try:
        wait_for(lambda: spool.raced >= 8 and spool.pending == 0, 30, "the raced frames sent")
    finally:
        thread.stop(0.0)
        spool.close()
    assert thread.error is None, thread.error
    assert len(cloud.stored()) == 13
    assert len(sessions) == 1  # before: a new session for every raced frame
