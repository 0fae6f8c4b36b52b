"""``semcom bench load`` end to end: real edge processes (both transports) against one cloud."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from semcom.bench.load import percentiles
from semcom.bench.load_memory import RssSampler, rss_bytes

FIELDS = {
    "benchmark", "edges", "seconds", "transports", "stream", "produced", "stored", "lost",
    "duplicated", "left_in_spool", "quarantined", "acked", "committed_per_s", "commit_span_s",
    "ack_latency_ms", "reconnects", "errors", "end_s", "idle_s", "memory", "rss_mb", "ok",
    "rss_ok", "per_edge",
}  # fmt: skip
MILESTONES = ("start", "at_60s", "end", "idle")


@pytest.mark.slow
@pytest.mark.uplink
def test_bench_load_three_edges_lose_nothing_and_report_every_field(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "semcom", "bench", "load", "--edges", "3", "--seconds", "10"]
    cmd += ["--idle-s", "3", "--json", "--keep", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.stdout, done.stderr[-4000:]
    result = json.loads(done.stdout)
    where = f"(files in {tmp_path}): {done.stdout[:3000]}"
    assert set(result) == FIELDS, where
    assert result["transports"] == {"webrtc": 2, "websocket": 1}, where
    assert result["committed_per_s"] > 0, where
    assert result["produced"] > 100, where
    assert result["lost"] == 0, where
    assert result["duplicated"] == 0, where
    assert result["stored"] == result["produced"] == result["acked"], where
    assert 0 < result["ack_latency_ms"]["p50"] <= result["ack_latency_ms"]["p99"], where
    memory = result["memory"]
    for name in MILESTONES:
        assert memory[name]["rss_mb"] > 20, where
        assert memory[name]["index_vectors"] is not None, where
        assert result["rss_mb"][name] == memory[name]["rss_mb"], where
    assert memory["end"]["index_vectors"] > 0, where
    assert memory["rss_idle_over_60s"] > 0, where
    assert len(result["per_edge"]) == 3, where
    assert result["ok"] is True, where
    assert done.returncode == 0, done.stderr[-4000:]


def test_percentiles_of_a_merged_histogram_by_nearest_rank() -> None:
    values = np.arange(1, 101, dtype=float)
    hist = Counter(values.tolist())
    assert percentiles(hist) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert percentiles(Counter({2.0: 98, 500.0: 2})) == {"p50": 2.0, "p95": 2.0, "p99": 500.0}
    assert percentiles(Counter()) == {"p50": 0.0, "p95": 0.0, "p99": 0.0}


def test_rss_sampler_reads_this_process() -> None:
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs Linux /proc")
    assert rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n") == 2 * 1024 * 1024
    sampler = RssSampler(int(Path("/proc/self/stat").read_text().split()[0]), period_s=0.01)
    sampler.start()
    sampler.stop()
    assert sampler.samples
    assert sampler.samples[0][1] > 10 * 1024 * 1024
