"""An edge whose kept codebook the cloud never stored (the cloud's database was reset) over a
real link (a ``semcom cloud serve`` process with a fresh database, the edge's own parts wired
by ``edge.daemon.wire_codebooks``): the cloud refuses the Hello (``UNKNOWN_CODEC``, naming the
codebook's hash); the edge goes back to int8 and keeps sending, sets the codebook file aside,
says so (``/healthz``, ``/metrics``), and quarantines the spooled embeddings coded with it with
a reason that says how to recover them; the other spooled messages are stored. Recovery as the
reason says: the cloud gets the file, the operator retries, and every message is stored once.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edge.capture import Frame
from edge.codebook_fallback import refile
from edge.codebooks import CodebookStore
from edge.config import UplinkConfig
from edge.daemon import codebook_dir
from edge.metrics import EdgeMetrics
from shared.codec import decode
from shared.messages import Embedding, FrameCounts, Message
from shared.pq import PQCodec, fit_pq
from shared.synthetic import ClusteredSpec, clustered_embeddings
from shared.vectors import create_codec, fingerprint
from tests.uplink.conftest import Cloud, uplink_config, wait_for
from tests.uplink.test_codebook_push import DIM, ENCODER, Edge
from tests.uplink.test_drain import drain, spool_cli

pytestmark = pytest.mark.uplink


def _kept(config: UplinkConfig) -> tuple[PQCodec, CodebookStore]:
    """A codebook an earlier cloud pushed, kept next to the spool."""
    book = fit_pq(clustered_embeddings(2000, ClusteredSpec(DIM), seed=3), m=8, seed=1)
    store = CodebookStore(codebook_dir(config), ENCODER, DIM)
    store.directory.mkdir(parents=True, exist_ok=True)
    book.save(store.path(book.content_hash, ".npz"))
    store.make_current(book)
    return book, store


def _spool_offline(edge: Edge) -> tuple[set[int], set[int]]:
    """Spooled while the cloud was away: 10 embeddings coded with the kept codebook, and a
    FrameCounts; returns their tracks and the embeddings' seqs."""
    frame = Frame(np.zeros((360, 640, 3), np.uint8), 0, time.time_ns() // 1_000)
    edge.outbox.put(frame.capture_ts_us, edge.pipeline.hello("t", frame, 25.0), control=True)
    edge.emit(10)
    edge.outbox.put(time.time_ns() // 1_000, FrameCounts("cam1", {2: 7}))
    coded = {seq for seq, _ in edge.sink.spool.peek(1 << 40)} - {edge.sink.spool.next_seq - 1}
    return set(edge.sent), coded


def test_a_kept_codebook_the_cloud_lacks_is_set_aside_and_the_edge_goes_on_in_int8(
    cloud: Cloud, tmp_path: Path
) -> None:
    config = uplink_config(cloud, tmp_path, transport="websocket")
    book, store = _kept(config)
    edge = Edge(config, seed=1)
    assert edge.pipeline.pinned  # the restarted edge uses it, and its Hello announces it
    old_tracks, coded = _spool_offline(edge)

    cloud.start()  # a fresh database: it never stored that codebook
    edge.thread.start()
    try:
        wait_for(lambda: edge.link.stats.codebook_set_aside, 30, "the codebook to be set aside")
        edge.emit(20)
        wait_for(
            lambda: edge.link.spool.pending == 0 and edge.link.stats.acked_frames >= 21,
            30,
            "the new embeddings and the spooled counts to be stored",
        )
        assert edge.thread.alive, "the uplink stopped"
        assert edge.thread.error is None
        what = f"pq8x8 {book.content_hash.hex()[:12]}"
        assert edge.link.stats.codebook_set_aside == what
        assert (edge.link.codebook, edge.link.stats.codebook) == ("", "")
        assert edge.pipeline.codec.codec_id == "int8"  # new embeddings: the universal rung
        _, body = EdgeMetrics(edge.outbox, uplink=edge.link).health()
        assert body["codebook_set_aside"] == what
        assert body["codebook"] == ""
    finally:
        edge.stop()

    int8 = fingerprint(create_codec("int8", DIM))
    stored = _stored(cloud)
    embeddings = [m for m in stored if isinstance(m, Embedding)]
    assert {m.track_id for m in embeddings} == set(edge.sent) - old_tracks  # the new 20
    assert {m.codec for m in embeddings} == {int8}
    assert [m for m in stored if isinstance(m, FrameCounts)] == [FrameCounts("cam1", {2: 7})]
    # the file is set aside, never deleted, and no longer current (a restart stays on int8)
    aside = store.aside_path(book)
    assert aside.exists()
    assert store.current() is None
    assert not Edge(config, seed=2).pipeline.pinned
    # the operator sees why, and what to do
    listed = spool_cli(config.spool_path, "quarantine", "list")
    assert {int(line.split("\t")[0]) for line in listed.splitlines()} == coded
    assert f"UNKNOWN_CODEC: the cloud does not have codebook {what}" in listed
    assert str(aside) in listed

    # recovery as the reason says: the cloud gets the file, the operator retries
    cloud.stop()
    cloud.extra = ["--codebook", str(aside)]
    cloud.start()
    spool_cli(config.spool_path, "quarantine", "retry", "--all")
    drain(cloud, tmp_path, config.spool_path)
    stored = _stored(cloud)
    tracks = [m.track_id for m in stored if isinstance(m, Embedding)]
    assert sorted(tracks) == sorted(edge.sent), "an embedding was lost or stored twice"
    assert {m.codec for m in stored if isinstance(m, Embedding) and m.track_id in old_tracks} == {
        fingerprint(book)
    }


def _stored(cloud: Cloud) -> list[Message]:
    return [decode(frame).message for _, _, frame in cloud.stored()]


def test_a_crash_in_the_middle_of_the_fallback_is_repaired_by_the_next_refusal(
    cloud: Cloud, tmp_path: Path
) -> None:
    """The edge died after the spooled frames were re-filed and quarantined, before the file
    was set aside: restarted, it announces the codebook again, is refused again, and ends as
    if nothing had happened in between (nothing doubled, nothing lost)."""
    config = uplink_config(cloud, tmp_path, transport="websocket")
    book, store = _kept(config)
    edge = Edge(config, seed=1)
    old_tracks, coded = _spool_offline(edge)
    assert refile(edge.sink.spool, book, "UNKNOWN_CODEC: test") == (10, 1)  # then "killed"
    edge.sink.spool.close()
    assert store.current() is not None

    cloud.start()
    again = Edge(config, seed=2)
    assert again.pipeline.pinned
    again.start()  # its live Hello announces the codebook
    try:
        # the re-filed counts go first, under their Hello without the codebook; the live
        # Hello (and its refusal) comes with the first frames made under it
        again.emit(5)
        coded_again = set(again.sent)
        wait_for(lambda: again.link.stats.codebook_set_aside, 30, "the codebook to be set aside")
        again.emit(5)
        wait_for(
            lambda: again.link.spool.pending == 0 and again.link.stats.acked_frames >= 6,
            30,
            "the counts and the new embeddings to be stored",
        )
        assert again.thread.error is None
    finally:
        again.stop()
    stored = _stored(cloud)
    embeddings = [m for m in stored if isinstance(m, Embedding)]
    assert sorted(m.track_id for m in embeddings) == sorted(set(again.sent) - coded_again)
    assert {m.codec for m in embeddings} == {fingerprint(create_codec("int8", DIM))}
    assert [m for m in stored if isinstance(m, FrameCounts)] == [FrameCounts("cam1", {2: 7})]
    listed = spool_cli(config.spool_path, "quarantine", "list")
    aside = {int(line.split("\t")[0]) for line in listed.splitlines()}
    assert coded < aside  # the first run's 10 (once) and the 5 coded before the refusal
    assert len(aside) == 15
    assert store.current() is None
    assert store.aside_path(book).exists()
    assert not old_tracks & set(again.sent)
