"""Two code sizes in one deployment, over a real link (a ``semcom cloud serve`` process and real
edge uplinks over WebSocket and aiortc WebRTC on 127.0.0.1).

The cloud fits a 64-byte and a 32-byte codebook for the encoder space (``codebooks.auto_fit_m:
[64, 32]``). An edge with ``uplink.codebook_max_bytes: 64`` installs the 64-byte one; an edge
with 32 refuses it and installs the 32-byte one in the same session. Every seq of each edge is
stored once, and the codes of both rungs (int8, then its codebook) decode. An edge restarted with
a lower max does not use the larger codebook it kept: it takes the smaller one.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from shared.codec import decode
from shared.messages import Embedding
from shared.vectors import create_codec, fingerprint
from tests.uplink.conftest import EDGE, TOKEN, Cloud, uplink_config, wait_for
from tests.uplink.test_codebook_push import DIM, Edge, _cloud_codebooks

pytestmark = pytest.mark.slow

LEAN, LEAN_TOKEN = "edge-lean", "lean-s3cret"


def _config_file(cloud: Cloud) -> Path:
    path = cloud.workdir / "cloud.yaml"
    path.write_text(
        "codebooks:\n"
        "  auto_fit_min_vectors: 600\n"
        "  auto_fit_m: [64, 32]\n"
        "  auto_fit_reduced_dim: 64\n"
        "  auto_fit_period_s: 0.5\n"
    )
    return path


def _stored(cloud: Cloud, edge_id: str) -> tuple[list[int], list[tuple[int, int, bytes]]]:
    """Every stored seq of ``edge_id`` (with repeats, if any) and (track, codec fp, code)."""
    with sqlite3.connect(cloud.db) as conn:
        frames = conn.execute(
            "SELECT seq, frame FROM journal_frames WHERE edge_id = ?", (edge_id,)
        ).fetchall()
    seqs, rows = [], []
    for seq, frame in frames:
        seqs.append(int(seq))
        message = decode(bytes(frame)).message
        if isinstance(message, Embedding):
            rows.append((message.track_id, message.codec, message.code))
    return seqs, rows


def _check_stored(cloud: Cloud, edge: Edge, edge_id: str, codec_id: str) -> None:
    seqs, rows = _stored(cloud, edge_id)
    assert len(seqs) == len(set(seqs)), f"{edge_id}: a seq was stored twice"
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"{edge_id}: a seq was lost"
    assert sorted(t for t, _, _ in rows) == sorted(edge.sent), f"{edge_id}: lost or doubled"
    codecs = _cloud_codebooks(cloud)
    int8_fp = fingerprint(create_codec("int8", DIM))
    rungs = {fp for _, fp, _ in rows}
    assert int8_fp in rungs, f"{edge_id}: codes of the int8 rung are expected"
    (pq_fp,) = rungs - {int8_fp}
    assert codecs.resolve(pq_fp).codec_id == codec_id
    for track, fp, code in rows:
        decoded = codecs.resolve(fp).decode(code)[0]
        cos = float(decoded @ edge.sent[track] / np.linalg.norm(decoded))
        assert cos > (0.99 if fp == int8_fp else 0.6), (edge_id, track, fp, cos)


@pytest.mark.parametrize("transport", ["websocket", "webrtc"])
def test_each_edge_installs_the_largest_code_its_max_allows(
    cloud: Cloud, tmp_path: Path, transport: str
) -> None:
    cloud.extra = ["--config", str(_config_file(cloud)), "--edge", f"{LEAN}={LEAN_TOKEN}"]
    cloud.start()
    (tmp_path / "wide").mkdir()
    (tmp_path / "lean").mkdir()
    wide_config = uplink_config(cloud, tmp_path / "wide", transport=transport)
    lean_config = uplink_config(
        cloud, tmp_path / "lean", transport=transport, token=LEAN_TOKEN, codebook_max_bytes=32
    )
    assert wide_config.codebook_max_bytes == 64
    assert wide_config.token.get_secret_value() == TOKEN
    wide = Edge(wide_config, seed=1)
    lean = Edge(lean_config, seed=2, edge_id=LEAN)
    wide.start()
    lean.start()
    try:
        deadline = time.monotonic() + 150
        while not (wide.link.codebook and lean.link.codebook) and time.monotonic() < deadline:
            for edge in (wide, lean):
                if not edge.link.codebook:
                    edge.emit(10)
            time.sleep(0.05)
        assert wide.link.codebook == "pq64x8", "the edge with max 64 did not take pq64x8"
        assert lean.link.codebook == "pq32x8", "the edge with max 32 did not take pq32x8"
        for _ in range(5):
            wide.emit(20)
            lean.emit(20)
            time.sleep(0.02)
        for edge in (wide, lean):
            wait_for(lambda e=edge: e.link.spool.pending == 0, 60, "the spool to empty")
    finally:
        wide.stop()
        lean.stop()

    metrics = cloud.metrics()
    space = 'space="test-encoder-64"'
    assert f'semcom_codebooks_fitted_total{{code_bytes="64",{space}}} 1.0' in metrics
    assert f'semcom_codebooks_fitted_total{{code_bytes="32",{space}}} 1.0' in metrics
    assert f'semcom_codebook_installs_total{{edge="{EDGE}",state="installed"}} 1.0' in metrics
    assert f'semcom_codebook_installs_total{{edge="{EDGE}",state="refused"}}' not in metrics
    assert f'semcom_codebook_installs_total{{edge="{LEAN}",state="refused"}} 1.0' in metrics
    assert f'semcom_codebook_installs_total{{edge="{LEAN}",state="installed"}} 1.0' in metrics
    log = cloud.log.read_text()
    assert "refused codebook pq64x8" in log
    assert "uplink.codebook_max_bytes (32)" in log
    _check_stored(cloud, wide, EDGE, "pq64x8")
    _check_stored(cloud, lean, LEAN, "pq32x8")

    # the wide edge restarted with a max of 32: it does not use the pq64x8 it kept, refuses it
    # when offered, and takes pq32x8
    again = Edge(wide_config.model_copy(update={"codebook_max_bytes": 32}), seed=3)
    assert not again.pipeline.pinned
    again.start()
    try:
        deadline = time.monotonic() + 60
        while again.link.codebook != "pq32x8" and time.monotonic() < deadline:
            again.emit(5)
            time.sleep(0.1)
        assert again.link.codebook == "pq32x8"
        again.emit(20)
        wait_for(lambda: again.link.spool.pending == 0, 60, "the restarted edge's spool to empty")
    finally:
        again.stop()
    seqs, rows = _stored(cloud, EDGE)
    assert len(seqs) == len(set(seqs))
    assert sorted(seqs) == list(range(1, len(seqs) + 1))
    codecs = _cloud_codebooks(cloud)
    new = {codecs.resolve(fp).codec_id for track, fp, _ in rows if track in again.sent}
    assert "pq64x8" not in new
    assert "pq32x8" in new


def test_a_cloud_killed_after_the_refusal_gives_the_smaller_codebook_after_its_restart(
    cloud: Cloud, tmp_path: Path
) -> None:
    """SIGKILL of the cloud right after the lean edge refused pq64x8 (wherever the pull of
    pq32x8 then stands): after the restart the edge refuses pq64x8 again, ends on pq32x8, and
    every seq is stored once."""
    cloud.extra = ["--config", str(_config_file(cloud)), "--edge", f"{LEAN}={LEAN_TOKEN}"]
    cloud.start()
    lean = Edge(
        uplink_config(cloud, tmp_path, token=LEAN_TOKEN, codebook_max_bytes=32),
        seed=4,
        edge_id=LEAN,
    )
    lean.start()
    try:
        deadline = time.monotonic() + 120
        while "refused codebook pq64x8" not in cloud.log.read_text():
            assert time.monotonic() < deadline, "the lean edge never refused pq64x8"
            lean.emit(10)
            time.sleep(0.01)
        cloud.kill()
        lean.emit(30)  # spooled during the outage
        time.sleep(0.5)
        cloud.start()
        deadline = time.monotonic() + 60
        while lean.link.codebook != "pq32x8" and time.monotonic() < deadline:
            lean.emit(5)
            time.sleep(0.1)
        assert lean.link.codebook == "pq32x8"
        lean.emit(20)
        wait_for(lambda: lean.link.spool.pending == 0, 60, "the spool to empty")
    finally:
        lean.stop()
    assert "refused codebook pq64x8" in cloud.log.read_text(), "pq64x8 was not offered again"
    _check_stored(cloud, lean, LEAN, "pq32x8")
