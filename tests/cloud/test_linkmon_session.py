"""The ingest path feeds the LinkMonitor: a v3 heartbeat and an embedding through a real
EdgeSession, a connection served by ``pipelined``, and a v2 edge refused readably."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cloud.db import open_database
from cloud.ingest import Ingest, pipelined
from cloud.linkmon import LinkMonitor
from cloud.metrics import CloudMetrics
from cloud.session import EdgeSession
from cloud.store import Store
from cloud.writer import Writer
from shared import limits
from shared.codec import decode, encode
from shared.framing import pack_batch
from shared.geometry import Box
from shared.messages import (
    Ack,
    CameraInfo,
    CodecRef,
    Embedding,
    EmitReason,
    Envelope,
    Error,
    ErrorCode,
    FrameCounts,
    Heartbeat,
    Hello,
)
from shared.vectors import CodecSet, create_codec, fingerprint

EDGE = "edge-01"
F16 = create_codec("f16", 16)
INT8 = create_codec("int8", 16)
NOW = 1_764_000_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(open_database(f"sqlite:///{tmp_path / 'cloud.db'}"), CodecSet())


def hello() -> bytes:
    msg = Hello(
        "0.1.0",
        "det",
        "enc",
        16,
        (CodecRef("f16", F16.content_hash), CodecRef("int8", INT8.content_hash)),
        (CameraInfo("cam-01", 640, 360, 25.0),),
        True,
    )
    return encode(Envelope(EDGE, 0, NOW, NOW, msg))


def embedding(seq: int, capture_us: int, codec=INT8) -> bytes:  # type: ignore[no-untyped-def]
    msg = Embedding(
        "cam-01",
        3,
        EmitReason.FIRST_SIGHT,
        2,
        0.5,
        Box(0, 0, 0.1, 0.1),
        fingerprint(codec),
        bytes(codec.code_bytes),
    )
    return encode(Envelope(EDGE, seq, capture_us, capture_us, msg))


def heartbeat(rung: str = "int8") -> bytes:
    beat = Heartbeat(12, 256_000.0, 3, rung, 1_048_576)
    return encode(Envelope(EDGE, 0, NOW, NOW, beat))


def test_a_v3_heartbeat_and_an_embedding_land_in_the_monitor(store: Store) -> None:
    link = LinkMonitor(clock=lambda: NOW)
    session = EdgeSession(EDGE, "s-1", store, link)
    session.receive(hello())
    [answer] = [decode(r).message for r in session.receive(heartbeat())]
    assert answer == Heartbeat(0, 0.0, 0, "", 0)  # the cloud's own: no link health
    assert session.last_heartbeat == Heartbeat(12, 256_000.0, 3, "int8", 1_048_576)
    frame = embedding(1, NOW - 250_000)  # captured 250 ms before it arrived
    counts = encode(Envelope(EDGE, 2, NOW - 50_000, NOW, FrameCounts("cam-01", {2: 1})))
    refused = embedding(3, NOW, codec=create_codec("f16", 8))  # a codec never announced
    out = [decode(r).message for r in session.receive(pack_batch([frame, counts, refused]))]
    assert [m.seqs() for m in out if isinstance(m, Ack)] == [[1, 2]]
    [row] = link.overview()
    assert (row.edge_id, row.rung, row.backlog, row.reconnects, row.spool_bytes) == (
        EDGE,
        "int8",
        12,
        3,
        1_048_576,
    )
    assert row.rate_bps == pytest.approx(256_000.0)
    [bucket] = link.series(EDGE)
    # The frames accepted for storing: their bytes on the wire (not the refused one's).
    assert (bucket.frames, bucket.bytes) == (2, len(frame) + len(counts))
    assert (bucket.latency_p50_ms, bucket.latency_p95_ms) == (50.0, 250.0)
    assert bucket.rung == "int8"
    assert bucket.backlog == 12


def test_an_edge_without_a_ladder_is_on_its_embeddings_codec(store: Store) -> None:
    clock = iter(range(NOW, NOW + 100 * 1_000_000, 1_000_000))
    link = LinkMonitor(clock=lambda: next(clock))
    session = EdgeSession(EDGE, "s-1", store, link)
    session.receive(hello())
    session.receive(heartbeat(rung=""))
    session.receive(embedding(1, NOW, codec=F16))
    session.receive(embedding(2, NOW, codec=INT8))  # resolved from its fingerprint
    [step] = link.codec_steps(EDGE)
    assert (step.from_rung, step.to_rung) == ("f16", "int8")


def test_a_connection_opens_and_closes_its_session_in_the_monitor(store: Store) -> None:
    metrics = CloudMetrics()
    writer = Writer(store, metrics)
    link = LinkMonitor()
    ingest = Ingest(store, writer, metrics, link)
    seen_open: list[bool] = []

    async def main() -> None:
        writer.start()
        live = ingest.open(EDGE, "websocket")
        messages = iter([hello(), heartbeat(), embedding(1, NOW)])

        async def receive() -> bytes | None:
            await asyncio.sleep(0)
            row = link.edge(EDGE)
            seen_open.append(row is not None and row.connected)
            return next(messages, None)

        async def send(frame: bytes) -> None:
            pass

        try:
            await asyncio.wait_for(pipelined(live, receive, send), 30)
        finally:
            await asyncio.to_thread(writer.stop)

    asyncio.run(main())
    assert seen_open
    assert all(seen_open)  # connected while the connection was served
    row = link.edge(EDGE)
    assert row is not None
    assert (row.connected, row.transport, row.sessions) == (False, "websocket", 1)
    assert (row.reconnects, row.spool_bytes) == (3, 1_048_576)
    sample = metrics.registry.get_sample_value
    assert sample("semcom_edge_reconnects", {"edge": EDGE}) == 3
    assert sample("semcom_edge_spool_bytes", {"edge": EDGE}) == 1_048_576
    assert sample("semcom_edge_backlog", {"edge": EDGE}) == 12


@pytest.mark.parametrize("old", [2, 3])
def test_an_older_edge_gets_a_fatal_version_mismatch_it_can_read(store: Store, old: int) -> None:
    current = hello()
    frame = current[:2] + bytes([old]) + current[3:]  # what an older edge sends first
    session = EdgeSession(EDGE, "s", store)
    [reply] = session.receive(frame)
    assert reply[2] == old  # written in the edge's version: the Error is laid out alike
    error = decode(reply[:2] + bytes([limits.PROTOCOL_VERSION]) + reply[3:]).message
    assert isinstance(error, Error)
    assert (error.code, error.fatal) == (ErrorCode.VERSION_MISMATCH, True)
    assert f"protocol version {old} is not supported" in error.message
    assert f"this cloud speaks {limits.PROTOCOL_VERSION}" in error.message
    assert session.closed
    assert session.receive(current) == []  # the session is over
