"""``semcom bench ingest``: the ledger read from the catalog, the load generator's pacing, and
short real runs (a cloud process and the load generator over WebSocket and WebRTC; two
replicas on PostgreSQL) in which everything produced is stored once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from cloud.db import open_database
from cloud.session import EdgeSession
from cloud.store import Store
from semcom.bench import cpu
from semcom.bench.ingest import command
from semcom.bench.ingest_audit import read_ledger
from semcom.bench.ingest_sender import EdgePlan, EdgeSender, SenderSettings
from semcom.bench.ingest_stream import batches, edge_stream, vectors
from shared.vectors import CodecSet, create_codec

SERVER_FIELDS = {
    "benchmark", "transport", "edges", "replicas", "db", "messages", "messages_per_edge",
    "stream", "rate_per_session", "cloud_settings", "messages_per_s", "commit_span_s",
    "first_commit_after_s",
    "ack_latency_ms", "cpu_s", "cpu_s_per_1000", "machine", "produced", "stored", "acked",
    "lost", "duplicated", "duplicates", "catalog_missing", "refused", "sent_frames",
    "cuts_per_session", "reconnects", "failures", "cloud_errors", "transactions",
    "frames_per_transaction", "transaction_ms", "index_vectors", "index_caught_up_after_s",
    "prepare_s", "connect_s", "send_s", "timed_out", "wire_bytes_per_message", "vectors", "ok",
}  # fmt: skip
INT8 = create_codec("int8", 32)


def _ingest(url: str, edge: str, n: int) -> None:
    store = Store(open_database(url), CodecSet())
    stream = edge_stream(edge, vectors(n, 32, 0), INT8, np.random.default_rng(0))
    session = EdgeSession(edge, "s", store)
    for message in [stream.hello, *batches(stream.frames, 4_000)]:
        session.receive(message)
    store.engine.dispose()


def test_the_ledger_counts_stored_lost_and_duplicated_rows_from_the_catalog(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    _ingest(url, "edge-a", 40)
    _ingest(url, "edge-b", 10)
    [a, b] = read_ledger(url, {"edge-a": 40, "edge-b": 10})
    assert (a.stored, a.lost, a.duplicated, b.stored, b.duplicated) == (40, 0, 0, 10, 0)
    assert a.first_received_us is not None
    assert a.last_received_us is not None
    assert a.first_received_us <= a.last_received_us
    engine = open_database(url)
    with engine.begin() as conn:  # one frame lost, one detection row twice
        conn.execute(text("DELETE FROM journal_frames WHERE edge_id = 'edge-a' AND seq = 7"))
        conn.execute(
            text(
                "INSERT INTO detections (camera_id, track_id, ts_us, class_id, confidence, x1, "
                "y1, x2, y2, edge_id, seq, has_embedding) SELECT camera_id, track_id, ts_us, "
                "class_id, confidence, x1, y1, x2, y2, edge_id, seq, 0 FROM detections "
                "WHERE edge_id = 'edge-b' AND seq = 3"
            )
        )
    engine.dispose()
    [a, b] = read_ledger(url, {"edge-a": 40, "edge-b": 10})
    assert (a.stored, a.lost) == (39, 1)
    assert a.duplicates["detection_rows"] == 1  # the lost frame's row has no journal frame
    assert b.duplicates["detection_rows"] == 1
    assert b.lost == 0


def test_a_paced_sender_sends_no_faster_than_its_rate() -> None:
    settings = SenderSettings("websocket", 60_000, 262_144, 2.0, 15.0, 0, rate=100.0)
    stream = edge_stream("edge-a", vectors(50, 32, 0), INT8, np.random.default_rng(0))
    sender = EdgeSender(settings, EdgePlan("edge-a", "t", "http://127.0.0.1:1"), stream, "s")
    at = sender._started + 0.105  # 11 due: seq 1 at once, then 100/s
    assert sender._due(at) == 11
    assert sender._take(sender._due(at)) == list(range(1, 12))
    assert sender._due(at) == 0
    assert sender._due(at + 0.05) == 5
    unpaced = EdgeSender(
        SenderSettings("websocket", 2_000, 262_144, 2.0, 15.0, 0, rate=0.0),
        EdgePlan("edge-a", "t", "http://127.0.0.1:1"),
        stream,
        "s",
    )
    first = unpaced._take(unpaced._due())  # a batch holds what fits in batch_bytes
    assert 1 < len(first) < 50
    assert sum(len(stream.frames[s - 1]) + 2 for s in first) <= 2_000


def test_cpu_figures_read_proc() -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc")
    assert (cpu.process_cpu_s(os.getpid()) or 0.0) > 0.0
    before = cpu.machine_cpu()
    assert before is not None
    after = cpu.machine_cpu()
    assert after is not None
    assert 0.0 <= after.since(before)["busy_share"] <= 1.0


def test_options_that_need_real_sessions_are_refused() -> None:
    runner = CliRunner()
    got = runner.invoke(command, ["--transport", "none", "--cuts", "1"])
    assert got.exit_code == 2
    assert "need real sessions" in got.output
    got = runner.invoke(command, ["--transport", "websocket", "--replicas", "2"])
    assert got.exit_code == 2
    assert "--db postgresql" in got.output


def test_in_process_mode_still_reports_committed_and_indexed() -> None:
    got = CliRunner().invoke(command, ["--n", "400", "--edges", "2", "--json"])
    assert got.exit_code == 0, got.output
    report = json.loads(got.output.splitlines()[-1])
    assert report["messages"] == 400
    assert report["messages_per_s"] > 0


def _run(*args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "semcom", "bench", "ingest", "--json", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.stdout, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout[:3000]
    return report


def _assert_whole(report: dict[str, Any], produced: int) -> None:
    where = json.dumps(report)[:3000]
    assert set(report) == SERVER_FIELDS, where
    assert report["produced"] == report["stored"] == report["acked"] == produced, where
    assert report["lost"] == 0, where
    assert report["duplicated"] == 0, where
    assert report["catalog_missing"] == {"detection_rows": 0, "embedding_rows": 0}, where
    assert report["messages_per_s"] > 0, where
    assert 0 < report["ack_latency_ms"]["p50"] <= report["ack_latency_ms"]["p99"], where
    assert report["cpu_s_per_1000"]["cloud"] > 0, where
    assert report["cpu_s_per_1000"]["loadgen"] > 0, where
    assert report["ok"] is True, where


@pytest.mark.uplink
def test_websocket_sessions_with_cuts_store_everything_once() -> None:
    """Each session drops its connection twice, each time just after sending a batch: what
    was unacknowledged is sent again (some of it stored already), and stored once."""
    report = _run(
        "--transport", "websocket", "--edges", "3", "--n", "600", "--cuts", "2",
        "--batch-bytes", "4096", "--window-bytes", "8192",
    )  # fmt: skip
    _assert_whole(report, 600)
    assert report["reconnects"] == 6
    assert report["sent_frames"] >= report["produced"]
    assert report["index_vectors"] == [600]
    assert report["db"].startswith("sqlite")


@pytest.mark.uplink
def test_webrtc_sessions_store_everything_once() -> None:
    report = _run(
        "--transport", "webrtc", "--edges", "2", "--n", "300", "--rate", "200",
        "--cloud-setting", "describer.enabled=false",
    )  # fmt: skip
    _assert_whole(report, 300)
    assert report["rate_per_session"] == 200
    assert report["cloud_settings"] == {"describer.enabled": False}


@pytest.mark.uplink
@pytest.mark.postgres
def test_two_replicas_on_postgresql_store_everything_once() -> None:
    from semcom.bench.pgcluster import server_bin

    if server_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    report = _run(
        "--transport", "websocket", "--edges", "4", "--n", "800", "--replicas", "2",
        "--db", "postgresql",
    )  # fmt: skip
    _assert_whole(report, 800)
    assert report["replicas"] == 2
    assert len(report["cpu_s"]["per_replica"]) == 2
    assert report["cpu_s_per_1000"]["database"] > 0
    assert report["index_vectors"] == [800, 800]  # each replica's index follows the catalog
