"""The live ingest path: group commits of several sessions, backpressure, pipelined connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cloud import journal
from cloud.db import open_database
from cloud.ingest import Ingest, pipelined
from cloud.journal import Frame
from cloud.metrics import CloudMetrics
from cloud.project import Space
from cloud.store import Store, WriteRequest
from cloud.writer import Writer
from shared.codec import decode, encode
from shared.framing import pack_batch
from shared.messages import (
    Ack,
    CameraInfo,
    CodecRef,
    Envelope,
    Error,
    FrameCounts,
    Hello,
    HelloAck,
)
from shared.vectors import CodecSet, create_codec

INT8 = create_codec("int8", 16)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(open_database(f"sqlite:///{tmp_path / 'cloud.db'}"), CodecSet())


def frames(edge_id: str, seqs: list[int]) -> WriteRequest:
    return WriteRequest(edge_id, Space(0, "none"), [Frame(s, 6, 0, b"f") for s in seqs])


def hello(edge: str) -> bytes:
    msg = Hello(
        "0.1.0",
        "det",
        "enc",
        16,
        (CodecRef("int8", INT8.content_hash),),
        (CameraInfo("cam-01", 640, 360, 25.0),),
        True,
    )
    return encode(Envelope(edge, 0, 1, 1, msg))


def counts(edge: str, *seqs: int) -> bytes:
    return pack_batch(
        [encode(Envelope(edge, s, 1000 + s, 1000 + s, FrameCounts("cam-01", {2: s}))) for s in seqs]
    )


def test_one_transaction_for_several_requests_of_one_edge(store: Store) -> None:
    # Two sessions of edge "a" (a reconnect racing the old one) and one of "b", in one group:
    # a seq sent twice is stored once and reported as a repeat to the later request.
    requests = [frames("a", [1, 2, 3]), frames("b", [1]), frames("a", [3, 4]), frames("a", [2])]
    results, _vectors = store.write(requests)
    assert [(r.stored, r.duplicates) for r in results] == [
        ([1, 2, 3], []),
        ([1], []),
        ([4], [3]),
        ([], [2]),
    ]
    assert [r.watermark for r in results] == [4, 1, 4, 4]
    assert journal.count(store.engine, "a") == 4


def test_writer_keeps_order_and_bounds_what_waits(store: Store) -> None:
    metrics = CloudMetrics()
    writer = Writer(store, metrics, max_pending=10, max_batch_frames=25)

    async def main() -> list[tuple[list[int], int]]:
        writer.start()
        try:
            # 8 requests of 4 frames against room for 10: the writer must let them through
            # a few at a time, in order, and make room as commits complete.
            queued = [await writer.enqueue(frames("e", [4 * i + j for j in range(1, 5)]))
                      for i in range(8)]  # fmt: skip
            results = await asyncio.gather(*queued)
            return [(r.stored, writer.pending) for r in results]
        finally:
            await asyncio.to_thread(writer.stop)

    got = asyncio.run(main())
    assert [stored for stored, _ in got] == [[4 * i + j for j in range(1, 5)] for i in range(8)]
    assert writer.pending == 0
    waited = metrics.registry.get_sample_value("semcom_writer_backpressure_total")
    assert waited is not None
    assert waited >= 1  # at least one request had to wait for room
    assert store.watermark("e") == 32


def test_a_pipelined_connection_acks_every_message_in_order(store: Store) -> None:
    metrics = CloudMetrics()
    writer = Writer(store, metrics)
    ingest = Ingest(store, writer, metrics)
    incoming = [hello("e"), *(counts("e", 2 * i + 1, 2 * i + 2) for i in range(20)), b"junk"]
    sent: list[object] = []

    async def main() -> None:
        writer.start()
        live = ingest.open("e")
        messages = iter(incoming)

        async def receive() -> bytes | None:
            await asyncio.sleep(0)
            return next(messages, None)

        async def send(frame: bytes) -> None:
            sent.append(decode(frame).message)

        try:
            await asyncio.wait_for(pipelined(live, receive, send), 30)
        finally:
            await asyncio.to_thread(writer.stop)

    asyncio.run(main())
    assert isinstance(sent[0], HelloAck)
    acks = [m for m in sent if isinstance(m, Ack)]
    assert [a.seqs() for a in acks] == [[2 * i + 1, 2 * i + 2] for i in range(20)]
    marks = [a.seq for a in acks]  # the watermark: never behind what the ack covers
    assert marks == sorted(marks)
    assert all(m >= 2 * i + 2 for i, m in enumerate(marks))
    assert marks[-1] == 40
    assert isinstance(sent[-1], Error)  # the junk message: refused, the loop still ended
    assert journal.count(store.engine, "e") == 40


def test_a_connection_lost_with_messages_in_flight_leaves_nothing_unawaited(
    store: Store,
) -> None:
    """The peer goes away (``send`` fails) while messages wait for their commit: their frames
    are stored all the same, and no reply coroutine is left unawaited (a RuntimeWarning, an
    error under this suite's filterwarnings)."""
    import gc

    metrics = CloudMetrics()
    writer = Writer(store, metrics)
    ingest = Ingest(store, writer, metrics)
    incoming = iter([hello("e"), *(counts("e", 2 * i + 1, 2 * i + 2) for i in range(8))])

    async def main() -> None:
        writer.start()
        live = ingest.open("e")

        async def receive() -> bytes | None:
            return next(incoming, None)

        async def send(_frame: bytes) -> None:
            raise ConnectionResetError("the peer went away")

        try:
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(pipelined(live, receive, send, depth=4), 30)
        finally:
            await asyncio.to_thread(writer.stop)

    asyncio.run(main())
    gc.collect()
    assert journal.count(store.engine, "e") <= 16


def test_a_closed_writer_refuses_without_storing(store: Store) -> None:
    writer = Writer(store, CloudMetrics())
    writer.stop()

    async def main() -> None:
        await writer.enqueue(frames("e", [1]))

    with pytest.raises(RuntimeError, match="shutting down"):
        asyncio.run(main())
    assert journal.count(store.engine, "e") == 0
