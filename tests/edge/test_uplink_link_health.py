"""The uplink's heartbeats carry its real link health (protocol v3) to the cloud's monitor.

The edge side is the real uplink, spool and ladder; the cloud side is a real
:class:`cloud.session.EdgeSession` over SQLite feeding a real :class:`cloud.linkmon.LinkMonitor`.
Only the network between them is replaced, by :class:`Loopback`: control frames reach the
session and its replies come back; data frames are swallowed (a link that never delivers), so
the spool keeps a known content and the heartbeats have something to report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.db import open_database
from cloud.linkmon import EdgeLink, LinkMonitor
from cloud.session import EdgeSession
from cloud.store import Store
from edge.config import UplinkConfig
from edge.loadgen import CodecChoice
from edge.pipeline import Outbox
from edge.sink import SpoolSink
from edge.spool import Priority, Spool
from edge.transport import Transport, TransportError
from edge.uplink import Uplink
from edge.uplink_thread import UplinkThread
from shared.codec import decode
from shared.messages import FrameCounts, Heartbeat
from shared.vectors import CodecSet, create_codec

EDGE = "edge-lh"
LADDER = [create_codec("f16", 64), create_codec("int8", 64)]


class Loopback:
    """A :class:`~edge.transport.Transport` into an in-process cloud session (no network).

    ``drop_after``: after forwarding that many heartbeats the connection fails, as a broken
    link does (``recv`` raises :class:`TransportError`)."""

    name = "loopback"

    def __init__(self, session: EdgeSession, link: LinkMonitor, drop_after: int | None) -> None:
        self.session = session
        self.link = link
        self.drop_after = drop_after
        self.beats = 0
        self.replies: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def connect(self) -> None:
        self.link.session_opened(EDGE, self.session.session_id, self.name)

    async def send_control(self, data: bytes) -> None:
        for reply in self.session.receive(data):
            self.replies.put_nowait(reply)
        if isinstance(decode(data).message, Heartbeat):
            self.beats += 1
            if self.drop_after is not None and self.beats >= self.drop_after:
                self.replies.put_nowait(None)

    async def send_data(self, data: bytes) -> None:
        pass  # never delivered: the frames stay spooled, unacknowledged

    async def recv(self) -> bytes:
        reply = await self.replies.get()
        if reply is None:
            raise TransportError("link dropped")
        return reply

    @property
    def buffered(self) -> int:
        return 0

    async def close(self) -> None:
        self.link.session_closed(EDGE, self.session.session_id)


class Harness:
    """An edge (spool with frames, uplink with a two-rung ladder) and its in-process cloud."""

    def __init__(self, tmp_path: Path, drop_first_after: int | None) -> None:
        self.store = Store(open_database(f"sqlite:///{tmp_path / 'cloud.db'}"), CodecSet())
        self.link = LinkMonitor()
        self.sessions: list[EdgeSession] = []
        self.spool = Spool(tmp_path / "spool.db")
        sink = SpoolSink(self.spool)
        outbox = Outbox(EDGE, sink)
        now = time.time_ns() // 1_000
        outbox.put(now, CodecChoice(LADDER).hello("test", "cam-01"), control=True)
        for i in range(20):
            outbox.put(now + i, FrameCounts("cam-01", {2: i + 1}))
        config = UplinkConfig.model_validate(
            {
                "cloud": "http://127.0.0.1:9",
                "token": "t",
                "spool_path": tmp_path / "spool.db",
                "heartbeat_s": 0.05,
                "timeout_s": 5.0,
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.1,
                "max_rate": 100_000,
            }
        )

        def factory(_config: UplinkConfig, edge_id: str) -> Transport:
            n = len(self.sessions)
            session = EdgeSession(edge_id, f"s-{n}", self.store, self.link)
            self.sessions.append(session)
            return Loopback(session, self.link, drop_first_after if n == 0 else None)

        self.uplink = Uplink(
            config,
            EDGE,
            self.spool,
            lambda: sink.hello,
            ladder=[c.codec_id for c in LADDER],
            rung_bytes=[10_000, 5_000],
            transport_factory=factory,
        )
        self.thread = UplinkThread(self.uplink)

    def wait(self, what: str, predicate: Callable[[EdgeLink], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.thread.error is None, self.thread.error
            row = self.link.edge(EDGE)
            if row is not None and predicate(row):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}: {self.link.edge(EDGE)}")


@pytest.fixture
def harness(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(tmp_path, getattr(request, "param", None))
    h.thread.start()
    yield h
    h.thread.stop(0.0)
    h.spool.close()


@pytest.mark.parametrize("harness", [2], indirect=True)
def test_heartbeats_report_reconnects_rung_backlog_and_spool_bytes(harness: Harness) -> None:
    spooled = harness.spool.pending_bytes
    assert harness.spool.pending == 20
    assert spooled > 0
    # The first session breaks after two heartbeats; the edge reconnects on its own.
    harness.wait("a heartbeat of the second session", lambda e: e.reconnects == 1)
    first, second = harness.sessions[:2]
    assert first.last_heartbeat is not None
    assert first.last_heartbeat.reconnects == 0
    assert second.last_heartbeat is not None
    assert second.last_heartbeat.reconnects == 1
    row = harness.link.edge(EDGE)
    assert row is not None
    assert (row.backlog, row.spool_bytes) == (20, spooled)  # nothing was delivered
    assert row.rung == "f16"  # no load: the ladder stays on its richest rung
    assert row.sessions >= 2
    assert row.connected
    assert row.transport == "loopback"


def test_a_ladder_step_reaches_the_cloud(harness: Harness) -> None:
    harness.wait("a first heartbeat", lambda e: e.rung == "f16")
    # Far more embeddings offered than 100 kbit/s carries: the ladder moves to int8.
    deadline = time.monotonic() + 20
    while harness.uplink.ladder.codec != "int8" and time.monotonic() < deadline:
        for _ in range(20):
            harness.uplink.spooled(Priority.FIRST_SIGHT, 10_000)
        time.sleep(0.05)
    assert harness.uplink.ladder.codec == "int8"
    harness.wait("the int8 rung", lambda e: e.rung == "int8")
    [step] = harness.link.codec_steps(EDGE)
    assert (step.from_rung, step.to_rung) == ("f16", "int8")
