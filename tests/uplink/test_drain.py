"""``semcom edge replay --drain`` sends what the spool holds, as it was produced, and the cloud's
refusals end in the quarantine, never silently deleted (issue 14, item 2).

Spools are filled as an edge fills them offline (its pipeline's outbox and spool sink, under
its own Hello), then drained by ``run_replay`` (what ``semcom edge replay --drain`` runs) to
a real cloud process; the quarantine is handled with ``semcom edge spool`` (Click's runner).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edge.cli import edge as edge_cli
from edge.pipeline import Outbox
from edge.replay import ReplayReport
from edge.sink import SpoolSink
from edge.spool import Spool
from shared.geometry import Box
from shared.messages import CameraInfo, CodecRef, Embedding, EmitReason, Hello
from shared.pq import fit_pq
from shared.synthetic import ClusteredSpec, clustered_embeddings
from shared.vectors import create_codec, fingerprint
from tests.uplink.conftest import EDGE, Cloud, EdgeThread, content, uplink_config
from tests.uplink.spooled import fill_spool

pytestmark = pytest.mark.uplink

INT8 = create_codec("int8", 384)
VIT = Hello(
    "0.1.0",
    "yolo11n_int8_coco_320.onnx",
    "vit_small_patch16_224",
    384,
    (CodecRef(INT8.codec_id, INT8.content_hash),),
    (CameraInfo("cam-7", 1280, 720, 25.0),),
    False,
)


def drain(cloud: Cloud, tmp_path: Path, spool: Path) -> ReplayReport:
    edge = EdgeThread(uplink_config(cloud, tmp_path, spool_path=spool))  # no FILE: a drain
    edge.start()
    edge.join(90)
    assert edge.error is None, edge.error
    assert edge.report is not None
    assert edge.report.left_in_spool == 0
    return edge.report


def catalog(cloud: Cloud, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(cloud.db) as conn:
        return sorted(conn.execute(sql).fetchall())


def spool_cli(spool: Path, *args: str) -> str:
    result = CliRunner().invoke(edge_cli, ["spool", *args, "--spool", str(spool)])
    assert result.exit_code == 0, result.output
    return result.output


def test_drain_announces_the_hello_the_frames_were_made_under(cloud: Cloud, tmp_path: Path) -> None:
    cloud.start()
    spool = tmp_path / "spool.db"
    made = fill_spool(spool, seconds=2.0, hello=VIT, codec=INT8, camera="cam-7")
    report = drain(cloud, tmp_path, spool)
    assert {content(f) for _, _, f in cloud.stored()} == made
    assert report.quarantined == 0
    assert catalog(cloud, "SELECT encoder, embedding_dim, random_init_encoder FROM edges") == [
        ("vit_small_patch16_224", 384, 0)
    ]
    assert catalog(cloud, "SELECT name, encoder, dim FROM spaces") == [
        ("vit_small_patch16_224-384", "vit_small_patch16_224", 384)
    ]
    assert catalog(cloud, "SELECT name FROM cameras") == [("cam-7",)]
    assert catalog(cloud, "SELECT COUNT(*) FROM embeddings")[0][0] > 0


def test_a_refused_hello_quarantines_its_frames_and_retry_sends_them_after_the_fix(
    cloud: Cloud, tmp_path: Path
) -> None:
    sample = clustered_embeddings(2000, ClusteredSpec(64), seed=3)
    codebook = tmp_path / "pq.npz"
    fit_pq(sample, m=8, seed=1).save(codebook)
    pq = create_codec(str(codebook), 64)
    older = Hello(
        "0.0.9",
        "yolo11n.onnx",
        "vit_tiny_patch16_224",
        64,
        (CodecRef(pq.codec_id, pq.content_hash),),
        (CameraInfo("cam-3", 640, 360, 10.0),),
        False,
    )
    spool = tmp_path / "spool.db"
    # Spooled under an earlier configuration (a PQ codebook), then under the current one.
    old = fill_spool(spool, seconds=2.0, hello=older, codec=pq, camera="cam-3")
    new = fill_spool(spool, seconds=2.0, hello=VIT, codec=INT8, camera="cam-7", seed=1) - old
    cloud.start()  # without the codebook: the older Hello is refused (UNKNOWN_CODEC)
    report = drain(cloud, tmp_path, spool)
    assert {content(f) for _, _, f in cloud.stored()} == new  # the other group went on
    assert report.quarantined == len(old)
    assert report.uplink["quarantined"] == len(old)
    listed = json.loads(spool_cli(spool, "quarantine", "list", "--json"))
    assert len(listed) == len(old)
    assert all(item["reason"].startswith("UNKNOWN_CODEC: ") for item in listed)
    assert "pq8x8" in listed[0]["reason"]
    assert "UNKNOWN_CODEC" in spool_cli(spool, "quarantine", "list")
    stats = json.loads(spool_cli(spool, "stats", "--json"))
    assert (stats["pending"], stats["quarantined"]) == (0, len(old))
    # The operator gives the cloud the codebook, and retries.
    cloud.stop()
    cloud.extra = ["--codebook", str(codebook)]
    cloud.start()
    out = spool_cli(spool, "quarantine", "retry", "--all")
    assert f"{len(old)} quarantined messages put back in the queue" in out
    report = drain(cloud, tmp_path, spool)
    stored = cloud.stored()
    assert {content(f) for _, _, f in stored} == old | new
    assert len(stored) == len(old) + len(new)
    assert report.quarantined == 0
    assert catalog(cloud, "SELECT name FROM spaces") == [
        ("vit_small_patch16_224-384",),
        ("vit_tiny_patch16_224-64",),
    ]
    assert catalog(cloud, "SELECT name FROM cameras") == [("cam-3",), ("cam-7",)]


def test_a_refused_frame_is_quarantined_not_deleted_and_dropped_by_the_operator(
    cloud: Cloud, tmp_path: Path
) -> None:
    spool_path = tmp_path / "spool.db"
    made = fill_spool(spool_path, seconds=1.0, hello=VIT, codec=INT8, camera="cam-7")
    # One embedding in a codec its Hello does not announce: the cloud refuses that frame.
    f16 = create_codec("f16", 384)
    spool = Spool(spool_path)
    outbox = Outbox(EDGE, SpoolSink(spool))
    now = time.time_ns() // 1_000
    outbox.put(now, VIT, control=True)
    vector = np.ones((1, 384), np.float32) / np.sqrt(384)
    code = f16.encode(vector)[0].tobytes()
    box = Box(0.1, 0.1, 0.2, 0.2)
    bad = Embedding("cam-7", 99, EmitReason.FIRST_SIGHT, 2, 0.9, box, fingerprint(f16), code)
    assert outbox.put(now, bad) > 0
    seq = spool.next_seq - 1
    spool.close()
    cloud.start()
    report = drain(cloud, tmp_path, spool_path)
    assert {content(f) for _, _, f in cloud.stored()} == made  # the rest is stored
    assert (report.quarantined, report.uplink["quarantined"]) == (1, 1)
    listed = spool_cli(spool_path, "quarantine", "list")
    assert listed.startswith(f"{seq}\tEmbedding\t")
    assert "UNKNOWN_CODEC: embedding names codec" in listed
    assert "not announced in Hello" in listed
    assert "1 quarantined messages deleted" in spool_cli(spool_path, "quarantine", "drop", str(seq))
    assert "the quarantine is empty" in spool_cli(spool_path, "quarantine", "list")


def test_the_spool_commands_say_what_is_wrong(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(edge_cli, ["spool", "stats", "--spool", str(tmp_path / "no.db")])
    assert missing.exit_code == 1
    assert f"no spool file at {tmp_path / 'no.db'}" in missing.output
    assert not (tmp_path / "no.db").exists()  # never created
    Spool(tmp_path / "s.db").close()
    both = runner.invoke(
        edge_cli, ["spool", "quarantine", "drop", "--spool", str(tmp_path / "s.db")]
    )
    assert both.exit_code == 2
    assert "give SEQ... or --all" in both.output
    config = tmp_path / "edge.yaml"
    config.write_text(f"uplink:\n  cloud: http://x\n  spool_path: {tmp_path / 's.db'}\n")
    found = runner.invoke(edge_cli, ["spool", "stats", "--json", "--config", str(config)])
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)["pending"] == 0
