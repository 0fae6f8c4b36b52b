"""Reconnect backoff: an unreachable cloud is retried on the logged schedule, whatever the
message rate (issue 14, item 3)."""

from __future__ import annotations

import itertools
import logging
import re
import socket
import threading
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
from shared.messages import FrameCounts
from shared.vectors import create_codec
from tests.uplink.conftest import EDGE, TOKEN

pytestmark = pytest.mark.uplink

RETRYING = re.compile(r"retrying in ([0-9.]+) s")


def refused_port() -> int:
    """A port nothing listens on: bound, then closed (connects are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_schedule_is_exponential_with_equal_jitter_and_a_cap() -> None:
    from edge.backoff import Backoff

    backoff = Backoff(1.0, 8.0)
    for _ in range(50):
        backoff.reset()
        pauses = [backoff.next_pause() for _ in range(6)]
        for n, pause in enumerate(pauses, start=1):
            d = min(8.0, 2.0 ** (n - 1))
            assert d / 2 <= pause <= d
    assert Backoff(2.0, 1.0).max_s == 2.0  # a cap below the first pause does not shrink it


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
def test_a_busy_producer_does_not_shorten_the_backoff(
    tmp_path: Path, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = UplinkConfig.model_validate(
        {
            "cloud": f"http://127.0.0.1:{refused_port()}",
            "token": TOKEN,
            "transport": transport,
            "ice_host_addresses": ["127.0.0.1"],
            "spool_path": tmp_path / "spool.db",
            "reconnect_initial_s": 1.0,
            "reconnect_max_s": 2.0,
            "connect_timeout_s": 5.0,
        }
    )
    attempts: list[float] = []

    def counting(cfg: UplinkConfig, edge_id: str) -> Transport:
        attempts.append(time.monotonic())  # the real transport; its connect is refused
        return make_transport(cfg, edge_id)

    spool = Spool(config.spool_path, config.spool_max_bytes)
    sink = SpoolSink(spool)
    outbox = Outbox(EDGE, sink)
    choice = CodecChoice([create_codec("f16", 64)])
    link = Uplink(config, EDGE, spool, lambda: sink.hello, transport_factory=counting)
    sink.on_append = link.spooled
    outbox.put(time.time_ns() // 1_000, choice.hello("test", "cam-01"), control=True)
    thread = UplinkThread(link)
    caplog.set_level(logging.WARNING, logger="edge.uplink")
    thread.start()
    seconds, rate = 6.0, 100.0
    start = time.monotonic()
    stop = threading.Event()
    try:
        i = 0
        while time.monotonic() - start < seconds:  # 100 messages/s, each waking the uplink
            now = time.time_ns() // 1_000
            outbox.put(now, FrameCounts("cam-01", {2: i % 7 + 1}))
            i += 1
            stop.wait(max(0.0, start + i / rate - time.monotonic()))
        elapsed = time.monotonic() - start
    finally:
        thread.stop(0.0)
        spool.close()
    assert thread.error is None, thread.error
    assert i >= 500  # the producer really was busy
    assert spool_pending_after(tmp_path) == i  # nothing was sent, nothing was lost
    pauses = [float(m.group(1)) for r in caplog.records if (m := RETRYING.search(r.getMessage()))]
    # Equal jitter with initial 1 s, cap 2 s: pauses of at least 0.5 s, then at least 1 s each.
    # Before the fix each spooled message ended the pause: ~60 attempts in 6 s.
    bound = 1 + int((elapsed - 0.5) // 1.0) + 1
    assert 3 <= len(attempts) <= bound, (len(attempts), bound, pauses)
    # Every pause lasted what the log said (the first `len(gaps)` logged pauses).
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(pauses) >= len(gaps)
    for gap, pause in zip(gaps, pauses[: len(gaps)], strict=True):
        assert gap >= pause - 0.06, (gaps, pauses)  # the log rounds to 0.1 s
        assert pause >= 0.5


def spool_pending_after(tmp_path: Path) -> int:
    spool = Spool(tmp_path / "spool.db")
    try:
        return spool.pending
    finally:
        spool.close()
