"""A codebook the cloud fits and pushes, over a real link (a ``semcom cloud serve`` process and
a real edge uplink over WebSocket and aiortc WebRTC on 127.0.0.1).

The edge starts on int8 (a universal rung); the cloud fits a PQ codebook once it holds
enough of the edge's embeddings, offers it, the edge pulls and verifies it, switches
mid-stream, and every seq is stored exactly once with codes of both rungs decodable. A
restarted edge keeps the codebook and uses it from its first Hello.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge.capture import Frame
from edge.config import UplinkConfig
from edge.daemon import wire_codebooks
from edge.pipeline import EdgePipeline, EmbedJob, Outbox
from edge.policy import EmbedRequest
from edge.sink import SpoolSink
from edge.spool import Spool
from edge.uplink import Uplink
from edge.uplink_thread import UplinkThread
from shared.codec import decode
from shared.geometry import Box
from shared.messages import Embedding, EmitReason
from shared.pq import load_codebook
from shared.vectors import CodecSet, create_codec, fingerprint
from tests.uplink.conftest import EDGE, Cloud, uplink_config, wait_for

pytestmark = pytest.mark.slow

DIM = 64
ENCODER = "test-encoder"


class _Encoder:
    """What the pipeline needs of an encoder: the vectors of the scene's objects, exactly."""

    name = ENCODER
    dim = DIM
    random_init = False

    def __init__(self) -> None:
        self.next: list[np.ndarray] = []

    def embed(self, crops: np.ndarray) -> np.ndarray:
        out, self.next = np.stack(self.next[: len(crops)]), self.next[len(crops) :]
        return out


class _Policy:
    camera = "cam1"

    def on_embedding(self, request: EmbedRequest, vector: np.ndarray) -> bool:
        return True


class Edge:
    """The edge agent's own parts (pipeline, outbox, spool sink, uplink, codebook receiver,
    wired by edge.daemon.wire_codebooks) around a scene of clustered unit vectors."""

    def __init__(self, config: UplinkConfig, seed: int, edge_id: str = EDGE) -> None:
        self.encoder = _Encoder()
        detector: Any = SimpleNamespace(name="test-detector")
        encoder: Any = self.encoder
        policy: Any = _Policy()
        self.pipeline = EdgePipeline(detector, encoder, create_codec("int8", DIM), policy, 1.0)
        self.sink = SpoolSink(Spool(config.spool_path, config.spool_max_bytes))
        self.link = Uplink(config, edge_id, self.sink.spool, lambda: self.sink.hello)
        self.sink.on_append = self.link.spooled
        self.outbox = Outbox(edge_id, self.sink)
        self.receiver = wire_codebooks(config, self.pipeline, self.outbox, self.sink, self.link)
        self.thread = UplinkThread(self.link)
        rng = np.random.default_rng(seed)
        self.centres = rng.standard_normal((40, DIM)).astype(np.float32)
        self.rng = rng
        self.sent: dict[int, np.ndarray] = {}  # track id -> vector
        self.track = seed * 1_000_000

    def start(self) -> None:
        frame = Frame(np.zeros((360, 640, 3), np.uint8), 0, time.time_ns() // 1_000)
        self.outbox.put(frame.capture_ts_us, self.pipeline.hello("t", frame, 25.0), control=True)
        self.thread.start()

    def emit(self, n: int) -> None:
        """``n`` embeddings through the pipeline's own embed stage, then spooled."""
        jobs = []
        for _ in range(n):
            self.track += 1
            v = self.centres[self.rng.integers(len(self.centres))]
            v = v + 0.35 * self.rng.standard_normal(DIM).astype(np.float32)
            v = v / np.linalg.norm(v)
            self.sent[self.track] = v
            self.encoder.next.append(v)
            box = Box(0.1, 0.1, 0.2, 0.2)
            request = EmbedRequest(
                self.track,
                EmitReason.FIRST_SIGHT,
                time.time_ns() // 1_000,
                (10.0, 10.0, 20.0, 20.0),
                box,
                2,
                0.9,
            )
            jobs.append(EmbedJob(request, np.zeros((8, 8, 3), np.uint8)))
        self.outbox.put_all(self.pipeline.embed(jobs))

    def stop(self) -> None:
        self.thread.stop(30.0)
        self.sink.spool.close()


def _config_file(cloud: Cloud) -> Path:
    path = cloud.workdir / "cloud.yaml"
    path.write_text(
        "codebooks:\n"
        "  auto_fit_min_vectors: 600\n"
        "  auto_fit_m: 8\n"
        "  auto_fit_reduced_dim: 32\n"
        "  auto_fit_period_s: 0.5\n"
    )
    return path


def _stored_embeddings(cloud: Cloud) -> tuple[list[int], list[tuple[int, int, bytes]]]:
    """Every stored seq (with repeats, if any) and (track id, codec fingerprint, code)."""
    seqs, rows = [], []
    for seq, _received, frame in cloud.stored():
        seqs.append(seq)
        message = decode(frame).message
        if isinstance(message, Embedding):
            rows.append((message.track_id, message.codec, message.code))
    return seqs, rows


def _cloud_codebooks(cloud: Cloud) -> CodecSet:
    with sqlite3.connect(cloud.db) as conn:
        files = [bytes(r[0]) for r in conn.execute("SELECT file FROM codebooks")]
    codecs = CodecSet([create_codec("int8", DIM)])
    for data in files:
        import io

        codecs.add(load_codebook(io.BytesIO(data)))
    return codecs


@pytest.mark.parametrize("transport", ["websocket", "webrtc"])
def test_an_edge_switches_to_the_pushed_codebook_mid_stream_and_keeps_it_after_a_restart(
    cloud: Cloud, tmp_path: Path, transport: str
) -> None:
    cloud.extra = ["--config", str(_config_file(cloud))]
    cloud.start()
    config = uplink_config(cloud, tmp_path, transport=transport)
    edge = Edge(config, seed=1)
    edge.start()
    try:
        # int8 until the cloud has fitted and pushed; then the same stream goes on in PQ
        deadline = time.monotonic() + 120
        while not edge.link.codebook and time.monotonic() < deadline:
            edge.emit(20)
            time.sleep(0.05)
        assert edge.link.codebook == "pq8x8", "the edge never switched to a pushed codebook"
        assert edge.pipeline.pinned
        assert edge.link.stats.codebook.startswith("pq8x8 ")
        for _ in range(10):
            edge.emit(20)
            time.sleep(0.02)
        wait_for(lambda: edge.link.spool.pending == 0, 60, "the spool to empty")
        beat = edge.link.heartbeat(time.monotonic())
        assert beat.rung == "pq8x8"
    finally:
        edge.stop()

    metrics = cloud.metrics()
    assert 'semcom_codebook_installs_total{edge="edge-t",state="installed"} 1.0' in metrics
    assert 'semcom_codebook_offers_total{edge="edge-t"} 1.0' in metrics
    assert 'semcom_codebooks_fitted_total{code_bytes="8",space="test-encoder-64"} 1.0' in metrics

    seqs, rows = _stored_embeddings(cloud)
    assert len(seqs) == len(set(seqs)), "a seq was stored twice"
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), "a seq was lost"
    assert sorted(t for t, _, _ in rows) == sorted(edge.sent), "an embedding was lost or doubled"
    codecs = _cloud_codebooks(cloud)
    int8_fp = fingerprint(create_codec("int8", DIM))
    rungs = {fp for _, fp, _ in rows}
    assert int8_fp in rungs, "codes of the int8 rung are expected"
    assert len(rungs) == 2, "codes of both rungs are expected"
    for track, fp, code in rows:
        decoded = codecs.resolve(fp).decode(code)[0]
        cos = float(decoded @ edge.sent[track] / np.linalg.norm(decoded))
        assert cos > (0.99 if fp == int8_fp else 0.6), (track, fp, cos)

    # a restarted edge (same spool, same state directory) keeps the codebook: its first
    # Hello announces it, its embeddings use it at once, and nothing is offered again
    again = Edge(config, seed=2)
    assert again.pipeline.pinned
    assert again.link.codebook == "pq8x8"
    before = len(seqs)
    again.start()
    try:
        again.emit(30)
        wait_for(
            lambda: again.link.spool.pending == 0 and again.link.stats.acked_frames >= 30,
            60,
            "the restarted edge's frames to be stored",
        )
        time.sleep(1.5)  # heartbeats: an offer would come with their replies
        assert again.receiver.receiving is None
    finally:
        again.stop()
    seqs, rows = _stored_embeddings(cloud)
    new = [fp for track, fp, _ in rows if track in again.sent]
    assert len(new) == 30
    assert set(new) == {fingerprint(again.pipeline.codec)}
    assert len(seqs) == before + 30
    assert len(set(seqs)) == len(seqs)
    offered = cloud.log.read_text().count("offering codebook")
    assert offered == 1, "the restarted edge, which announces the codebook, was offered it"
