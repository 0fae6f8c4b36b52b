"""``semcom codec fit --source``: a codebook fitted on the crops of real videos, embedded with
the edge's own detector and encoder (here the real YOLO11n int8 and a random-init test encoder:
the codebook says so)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from semcom.cli import cli
from shared.pq import load_codebook


@pytest.mark.realdata
@pytest.mark.slow
def test_codec_fit_from_two_videos(shared_data: Path, tmp_path: Path) -> None:
    videos = shared_data / "videos"
    out = tmp_path / "book.npz"
    result = CliRunner().invoke(
        cli,
        [
            "codec",
            "fit",
            "--source",
            str(videos / "traffic_pruthi.mp4"),
            "--source",
            str(videos / "highway_reckon762.mp4"),
            "--detector",
            str(shared_data / "weights" / "yolo11n_int8_coco_320.onnx"),
            "--imgsz",
            "320",
            "--encoder",
            "test_vit",
            "--random-init-encoder",
            "--every",
            "2",
            "--m",
            "8",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    assert "held-out recall@10" in result.output
    assert "picked by held-out same-track recall@10" in result.output  # the tracker's ids
    book = load_codebook(out)
    assert book.codec_id == "pq8x8"
    assert book.info["trainer"] == "faiss"
    source = str(book.info["source"])
    assert "traffic_pruthi.mp4" in source
    assert "highway_reckon762.mp4" in source
    assert "RANDOM-INIT" in source
    assert 0.0 < float(book.info["heldout_recall_at_10"]) <= 1.0
    assert book.info["criterion"] == "same-track recall@10"
    assert "opq16" in book.info["selection"]  # OPQ considered by default with track ids


def test_codec_fit_needs_embeddings_or_sources(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["codec", "fit", "--out", str(tmp_path / "b.npz")])
    assert result.exit_code == 2
    assert "either EMBEDDINGS or --source" in result.output
