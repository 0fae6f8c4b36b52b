"""A reset or replaced spool never loses frames (issue 14, item 1; docs/wire.md).

A new spool file for an edge the cloud knows numbers its messages from 1 again. Before the
spool had an identity, the HelloAck's watermark made the edge forget every new frame at or
below it (378 spooled, watermark 189: 189 dropped unsent). Real cloud process, real peers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.uplink.conftest import (
    Cloud,
    EdgeThread,
    content,
    spool_pending,
    uplink_config,
)
from tests.uplink.spooled import fill_spool

pytestmark = pytest.mark.uplink


def drain(cloud: Cloud, tmp_path: Path, spool: Path, transport: str = "webrtc") -> None:
    edge = EdgeThread(uplink_config(cloud, tmp_path, spool_path=spool, transport=transport))
    edge.start()
    edge.join(90)
    assert edge.error is None, edge.error
    assert edge.report is not None
    assert edge.report.left_in_spool == 0


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
def test_a_new_spool_with_more_frames_than_the_watermark_loses_none(
    cloud: Cloud, tmp_path: Path, transport: str
) -> None:
    cloud.start()
    first = fill_spool(tmp_path / "first.db", seconds=2.0)
    drain(cloud, tmp_path, tmp_path / "first.db", transport)
    watermark = len(cloud.stored())
    assert watermark == len(first)
    # The spool file is lost; the edge spools more than the watermark while offline.
    second = fill_spool(tmp_path / "second.db", seconds=5.0, seed=1)
    assert len(second) > watermark
    drain(cloud, tmp_path, tmp_path / "second.db", transport)
    stored = cloud.stored()
    assert {content(f) for _, _, f in stored} == first | second  # none lost
    assert len(stored) == len(first) + len(second)  # each once
    assert spool_pending(tmp_path / "second.db") == 0


def test_a_crash_between_renumbering_and_storing_loses_nothing(
    cloud: Cloud, tmp_path: Path
) -> None:
    import asyncio

    from edge.spool import Spool
    from edge.uplink import Uplink
    from shared.messages import HelloAck

    cloud.start()
    first = fill_spool(tmp_path / "first.db", seconds=2.0)
    drain(cloud, tmp_path, tmp_path / "first.db")
    second_path = tmp_path / "second.db"
    second = fill_spool(second_path, seconds=5.0, seed=1)
    # What the cloud answers this edge's Hello now (the journal's record), applied twice, as
    # by an edge that renumbered and crashed before anything of the new spool was stored.
    import sqlite3

    with sqlite3.connect(cloud.db) as conn:
        mark, spool_id, max_seq = conn.execute(
            "SELECT watermark, spool_id, max_seq FROM journal_watermarks"
        ).fetchone()
    ack = HelloAck("s", mark, 65_536, spool_id, max_seq + 1)
    spool = Spool(second_path)
    uplink = Uplink(uplink_config(cloud, tmp_path), "edge-t", spool, lambda: None)
    for _ in range(2):
        asyncio.run(uplink._on_hello_ack(ack))
        assert spool.pending == len(second)
        assert min(s for s, _ in spool.peek(1 << 40)) == max_seq + 1
    spool.close()
    drain(cloud, tmp_path, second_path)  # the restarted edge
    stored = cloud.stored()
    assert {content(f) for _, _, f in stored} == first | second
    assert len(stored) == len(first) + len(second)
