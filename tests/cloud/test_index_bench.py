"""``semcom bench index`` at toy size: the JSON shape, semcom against its independent baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from semcom.bench.index import FilterResult, _checks
from semcom.bench.index_baseline import Baseline
from semcom.cli import cli

ROW_FIELDS = {
    "filter",
    "selectivity",
    "recall_at_10",
    "p50_ms",
    "p99_ms",
    "qps",
    "baseline_recall_at_10",
    "baseline_p50_ms",
    "baseline_p99_ms",
    "baseline_qps",
    "p99_vs_baseline",
    "plan",
}


def bench(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli, ["bench", "index", "--queries", "40", "--json", *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_bench_index_json_semcom_beside_an_independent_baseline() -> None:
    doc = bench("--n", "25000", "--dim", "32", "--batch", "5000")
    assert (doc["n"], doc["dim"]) == (25_000, 32)
    assert "Gaussian mixture" in doc["vectors"]
    assert isinstance(doc["insert_per_s"], float)
    assert doc["index"]["kind"] == "ivf_sq8"
    base = doc["baseline"]
    # built by faiss alone: float32 IVF-Flat, not semcom's 8-bit IVF with its own lists
    assert base["faiss_class"] == "IndexIVFFlat"
    assert base["faiss"] == "IVF632,Flat"
    assert doc["index"]["nlist"] != 632
    assert base["reached_target"]
    assert base["post_filter_k"] == 100
    none, one, ten, half, tenth = doc["queries"]
    assert [q["filter"] for q in doc["queries"]] == ["none", "1%", "10%", "50%", "0.1%"]
    for q, share in zip(doc["queries"], (1.0, 0.01, 0.1, 0.5, 0.001), strict=True):
        assert set(q) >= ROW_FIELDS
        assert abs(q["selectivity"] - share) <= 0.25 * share, q  # brute-force count
        assert q["recall_at_10"] >= 0.9
        assert q["qps"] > 0
        assert q["baseline_qps"] > 0
    # tuned to semcom's unfiltered recall, measured again one query at a time
    assert none["baseline_recall_at_10"] >= base["target_recall_at_10"] - 0.01
    # post-filtering the top 100: a 1 % filter leaves about one of the true ten
    assert one["recall_at_10"] >= 0.99
    assert one["baseline_recall_at_10"] < 0.4
    assert tenth["baseline_recall_at_10"] < 0.1
    assert ten["baseline_recall_at_10"] < ten["recall_at_10"]
    assert half["baseline_recall_at_10"] > 0.8  # half admitted: post-filtering works
    assert tenth["plan"] == {"exact": 40}
    assert doc["checks"]["recall@10 at 1% > baseline's post-filtered"]


def test_bench_index_on_a_file_of_embeddings(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((3_000, 16)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    doc = bench("--vectors", str(tmp_path / "emb.npy"), "--n", "100000", "--dim", "16")
    assert doc["n"] == 2_960  # the rest are held-out queries
    assert str(doc["vectors"]).startswith("file emb.npy")
    assert doc["index"]["kind"] == "flat_fp16"
    assert all(q["recall_at_10"] == 1.0 for q in doc["queries"])


def row(name: str, recall: float, baseline_recall: float, p99_ratio: float) -> FilterResult:
    return FilterResult(
        filter=name,
        selectivity=0.01,
        p50_ms=1.0,
        p99_ms=2.0 * p99_ratio,
        qps=500.0,
        recall_at_10=recall,
        baseline_p50_ms=1.0,
        baseline_p99_ms=2.0,
        baseline_qps=500.0,
        baseline_recall_at_10=baseline_recall,
        p99_vs_baseline=p99_ratio,
        plan={},
    )


def test_checks_fail_when_semcom_does_not_beat_post_filtering() -> None:
    base = Baseline("ivf", None, "IVF4,Flat", 0.0, reached=True)
    good = _checks([row("none", 0.97, 0.97, 1.0), row("1%", 0.995, 0.1, 1.4)], base)
    assert all(good.values()), good
    tied = _checks([row("1%", 0.995, 0.995, 1.0)], base)
    assert not tied["recall@10 at 1% > baseline's post-filtered"]
    slow = _checks([row("1%", 0.995, 0.1, 1.6)], base)
    assert not slow["p99 1% <= 1.5 x baseline's"]
    missed = _checks([row("1%", 0.98, 0.1, 1.0)], Baseline("ivf", None, "", 0.0))
    assert not missed["recall@10 at 1% >= 0.99"]
    assert not missed["baseline tuned to semcom's unfiltered recall"]
