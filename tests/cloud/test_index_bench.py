"""``semcom bench index`` at toy size: the JSON shape, and recall against its brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from semcom.cli import cli


def bench(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(
        cli, ["bench", "index", "--queries", "40", "--json", *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    doc: dict[str, object] = json.loads(result.stdout)
    return doc


def test_bench_index_json() -> None:
    doc = bench("--n", "25000", "--dim", "32", "--batch", "5000")
    assert (doc["n"], doc["dim"]) == (25_000, 32)
    assert "Gaussian mixture" in str(doc["vectors"])
    assert isinstance(doc["insert_per_s"], float)
    assert doc["index"]["kind"] == "ivf_sq8"  # type: ignore[index]
    queries = doc["queries"]
    assert isinstance(queries, list)
    assert [q["filter"] for q in queries] == ["none", "1%", "10%", "0.1%"]
    for q in queries:
        assert set(q) >= {"p50_ms", "p99_ms", "recall_at_10", "raw_faiss_p99_ms", "plan"}
        assert q["recall_at_10"] >= 0.9
        assert q["recall_at_10"] == q["raw_faiss_recall_at_10"]  # the same faiss call
    assert queries[3]["plan"] == {"exact": 40}


def test_bench_index_on_a_file_of_embeddings(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((3_000, 16)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    doc = bench("--vectors", str(tmp_path / "emb.npy"), "--n", "100000", "--dim", "16")
    assert doc["n"] == 2_960  # the rest are held-out queries
    assert str(doc["vectors"]).startswith("file emb.npy")
    assert doc["index"]["kind"] == "flat_fp16"  # type: ignore[index]
    assert all(q["recall_at_10"] == 1.0 for q in doc["queries"])  # type: ignore[attr-defined]
