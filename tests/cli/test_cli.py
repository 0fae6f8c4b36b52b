"""The `semcom` command: help everywhere, codec tools, and the codec benchmark's JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from semcom.cli import cli
from shared import synthetic
from shared.codec import encode
from shared.framing import FrameWriter
from shared.messages import Envelope, FrameCounts
from shared.pq import load_codebook


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    "args", [[], ["bench"], ["bench", "codec"], ["codec"], ["codec", "fit"], ["codec", "info"]]
)
def test_help_everywhere(args: list[str]) -> None:
    assert "Usage:" in run(*args, "--help")


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "semcom", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("semcom, version")


def test_codec_fit_and_info(tmp_path: Path) -> None:
    x = synthetic.clustered_embeddings(1200, synthetic.ClusteredSpec(dim=48, clusters=8))
    np.save(tmp_path / "emb.npy", x * 3.0)  # not unit length: fit normalises by default
    out = run(
        "codec",
        "fit",
        str(tmp_path / "emb.npy"),
        "--m",
        "8",
        "--kmeans-iters",
        "5",
        "--out",
        str(tmp_path / "book.npz"),
    )
    assert "pq8x8, dim 48 -> " in out
    assert "-> 8 bytes" in out
    assert "no track ids: picked by 10-recall@10; candidates PCA 8: " in out
    book = load_codebook(tmp_path / "book.npz")
    assert book.info["criterion"] == "10-recall@10"
    assert set(book.info["selection"]) == {"8", "16", "32"}
    assert book.info["heldout_cosine_mean"] > 0.8
    info = json.loads(run("codec", "info", str(tmp_path / "book.npz")))
    assert info["content_hash"] == book.content_hash.hex()
    assert info["code_bytes"] == 8
    assert json.loads(run("codec", "info", "int8", "--dim", "384"))["code_bytes"] == 388


def test_codec_fit_with_opq_names_every_candidate(tmp_path: Path) -> None:
    x = synthetic.clustered_embeddings(1200, synthetic.ClusteredSpec(dim=48, clusters=8))
    np.save(tmp_path / "emb.npy", x)
    book_path = tmp_path / "book.npz"
    out = run("codec", "fit", str(tmp_path / "emb.npy"), "--m", "8", "--kmeans-iters", "5",
              "--opq", "--out", str(book_path))  # fmt: skip
    assert "no track ids: picked by 10-recall@10" in out
    assert "PCA+OPQ 32: " in out
    assert set(load_codebook(book_path).info["selection"]) == {
        "8", "opq8", "16", "opq16", "32", "opq32"
    }  # fmt: skip


def test_codec_errors_are_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "few.npy", np.ones((10, 8), np.float32))
    result = CliRunner().invoke(
        cli, ["codec", "fit", str(tmp_path / "few.npy"), "--out", str(tmp_path / "b.npz")]
    )
    assert result.exit_code == 1
    assert "need at least 256 samples" in result.output
    result = CliRunner().invoke(cli, ["codec", "info", str(tmp_path / "missing.npz")])
    assert result.exit_code == 1
    assert "file not found" in result.output


def test_train_dict(tmp_path: Path) -> None:
    path = tmp_path / "m.semcom"
    with open(path, "wb") as fh:
        writer = FrameWriter(fh)
        for i in range(400):
            counts = FrameCounts("cam-01", {2: i % 5, 0: i % 3, 7: 1})
            writer.write(encode(Envelope("edge-01", i + 1, 10**15 + i, 10**15 + i + 9, counts)))
    out = run("codec", "train-dict", str(path), "--size", "1024", "--out", str(tmp_path / "d"))
    assert "from 400 messages" in out
    assert (tmp_path / "d").stat().st_size > 0


def test_bench_codec_json(tmp_path: Path) -> None:
    out = run(
        "bench",
        "codec",
        "--dims",
        "64",
        "--n-base",
        "600",
        "--n-train",
        "600",
        "--n-query",
        "20",
        "--pq-m",
        "8",
        "--json",
    )
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["sample"].startswith("synthetic:")
    codecs = [r["codec"] for r in doc["results"]]
    assert codecs == ["f32", "f16", "int8", "pq8x8"]
    for r in doc["results"]:
        assert set(r) >= {
            "codec",
            "dim",
            "bytes_per_roi",
            "encode_per_s",
            "decode_per_s",
            "cosine_mean",
            "recall_at_10",
        }
        assert r["dim"] == 64
    f32, _, int8, pq = doc["results"]
    assert f32["recall_at_10"] == 1.0
    assert f32["cosine_mean"] == pytest.approx(1.0)
    assert pq["bytes_per_roi"] < int8["bytes_per_roi"] < f32["bytes_per_roi"]
    # The projection alone bounds what its quantiser can reach; vector codecs have no ceiling.
    assert int8["projection_recall_at_10"] is None
    assert pq["recall_at_10"] <= pq["projection_recall_at_10"] <= 1.0


def test_bench_codec_on_a_file(tmp_path: Path) -> None:
    x = synthetic.clustered_embeddings(900, synthetic.ClusteredSpec(dim=32, clusters=8))
    np.savez(tmp_path / "e.npz", embeddings=x, description=np.array("test crops"))
    out = run(
        "bench",
        "codec",
        "--embeddings",
        str(tmp_path / "e.npz"),
        "--n-query",
        "20",
        "--pq-m",
        "4",
        "--json",
    )
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["sample"] == "file e.npz: 900 x 32 embeddings, unit-normalised (test crops)"
