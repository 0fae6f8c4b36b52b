"""A message the cloud drops unacknowledged because its queue is full (a seq-0 ``OVERLOADED``
Error, cloud/peers.py) over a real link: the edge sends the frames still unanswered again
in the same session, shortly after (docs/wire.md, "Seq 0, refusals and errors"); before, they
stayed in flight until a reconnect, and filled the send window.

The drop is the test's own: a wrapper around the real transport swallows one payload and
answers, as the cloud's full queue does, ``OVERLOADED`` with ref_seq 0.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.config import UplinkConfig
from edge.spool import Spool
from edge.transport import Transport, make_transport
from edge.uplink import Uplink
from edge.uplink_thread import UplinkThread
from shared.bundle import decode_frame
from shared.codec import encode
from shared.framing import BATCH_MAGIC, unpack_batch
from shared.messages import Envelope, Error, ErrorCode
from tests.uplink.conftest import Cloud, content, uplink_config, wait_for
from tests.uplink.spooled import fill_spool
from tests.uplink.test_rate_budget import Counting

pytestmark = pytest.mark.uplink

BACKOFF_S = 60.0  # a reconnect would come only after this long
BOUND_S = 15.0


class Dropping(Counting):
    """The real transport; swallows the second payload it is given and answers OVERLOADED."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.payloads = 0
        self.dropped: list[int] = []  # the seqs of the swallowed payload
        self._answer: bytes | None = None

    async def send_data(self, data: bytes) -> None:
        self.payloads += 1
        if self.payloads == 2:
            frames = unpack_batch(data) if data.startswith(BATCH_MAGIC) else [data]
            self.dropped = [env.seq for f in frames for env in decode_frame(f)]
            now = time.time_ns() // 1_000
            error = Error(
                ErrorCode.OVERLOADED, "ingest queue full: message dropped, resend", 0, False
            )
            self._answer = encode(Envelope("cloud", 0, now, now, error))
            return
        await super().send_data(data)

    async def recv(self) -> bytes:
        if self._answer is not None:
            answer, self._answer = self._answer, None
            return answer
        return await super().recv()


def test_a_message_the_cloud_dropped_overloaded_is_sent_again_in_the_same_session(
    cloud: Cloud, tmp_path: Path
) -> None:
    cloud.start()
    spool_path = tmp_path / "spool.db"
    made = fill_spool(spool_path, seconds=3.0)
    config: UplinkConfig = uplink_config(
        cloud,
        tmp_path,
        transport="websocket",
        spool_path=spool_path,
        reconnect_initial_s=BACKOFF_S,
        reconnect_max_s=BACKOFF_S,
        batch_bytes=4_000,
    )
    transports: list[Dropping] = []

    def dropping(cfg: UplinkConfig, edge_id: str) -> Transport:
        t = Dropping(make_transport(cfg, edge_id))
        transports.append(t)
        return t

    spool = Spool(config.spool_path, config.spool_max_bytes)
    last = spool.next_seq - 1
    link = Uplink(config, "edge-t", spool, lambda: None, transport_factory=dropping)
    thread = UplinkThread(link)
    thread.start()
    try:
        wait_for(lambda: spool.pending == 0, BOUND_S, "the spool to drain")
    finally:
        thread.stop(0.0)
        spool.close()
    assert thread.error is None, thread.error
    assert len(transports) == 1, "the edge reconnected"
    assert transports[0].dropped, "no payload was dropped"
    stored = cloud.stored()
    seqs = [seq for seq, _, _ in stored]
    assert sorted(seqs) == list(range(1, last + 1)), "a seq was lost or stored twice"
    assert {content(f) for _, _, f in stored} == made
    assert link.stats.quarantined == 0
