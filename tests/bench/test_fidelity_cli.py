"""``semcom bench fidelity`` end to end on generated clips: the edge's crop rule and a
random-init encoder, the sample cached by :func:`extract` and measured by the command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.typing import NDArray

from edge.config import DetectorConfig, TimmEncoderConfig
from edge.detect import FrameBoxes
from semcom.bench.fidelity_data import CropSample, ExtractSpec, expand_sources, extract
from semcom.cli import cli

FRAMES = 50  # 2 s at 25 fps: sightings 1 s apart exist; 2 clips x 150 crops fit a codebook


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """The encoder sets torch's (process-wide) thread count: give it back to other tests."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _clip(path: Path, shade: int) -> Path:
    """Three rectangles (red, green, blue) circling a grey road; ``shade`` varies the road."""
    import cv2

    w, h = 320, 192
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]
    writer = cv2.VideoWriter(str(path), fourcc, 25.0, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(FRAMES):
        img = np.full((h, w, 3), shade, np.uint8)
        x = 10 + (4 * i) % 230
        img[30:80, x : x + 70] = (40, 40, 200)
        img[110:160, w - x - 60 : w - x] = (200, 100, 30)
        img[85:105, (x + 100) % 250 : (x + 100) % 250 + 40] = (30, 200, 30)
        writer.write(img)
    writer.release()
    return path


class BlobDetector:
    """Finds the rectangles of :func:`_clip`, tracked (red, green: cars; blue: a truck).

    It stands in for YOLO only: generated frames hold nothing a COCO model detects.
    """

    name = "blobs"

    def track(self, image: NDArray[np.uint8]) -> FrameBoxes:
        boxes, ids = [], []
        masks = (image[..., 2] > 150, image[..., 0] > 150, image[..., 1] > 150)
        for track_id, mask in enumerate(masks, start=1):
            ys, xs = np.nonzero(mask)
            if len(xs):
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                ids.append(track_id)
        n = len(ids)
        return FrameBoxes(
            np.asarray(boxes, np.float32).reshape(n, 4),
            np.asarray([{1: 2, 2: 7, 3: 2}[i] for i in ids], np.int64),
            np.full(n, 0.9, np.float32),
            np.asarray(ids, np.int64),
        )

    def reset(self) -> None:
        pass


def test_fidelity_json_on_generated_clips(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for i, shade in enumerate((70, 90, 110)):
        _clip(folder / f"road{i}.mp4", shade)
    (folder / "notes.txt").write_text("not a clip")
    spec = ExtractSpec(
        sources=expand_sources([str(folder)]),
        detector=DetectorConfig(model="blobs.onnx", imgsz=320),
        encoder=TimmEncoderConfig(name="test_vit", random_init=True, runtime="torch"),
        frame_stride=1,
    )
    sample, cached = extract(spec, tmp_path / "cache", progress=False, detector=BlobDetector())
    assert not cached
    assert len(sample) == 3 * 3 * FRAMES
    assert sample.clip_names == ("road0.mp4", "road1.mp4", "road2.mp4")
    assert sample.times_us.max() == pytest.approx((FRAMES - 1) * 40_000, abs=1)
    assert CropSample.load(next((tmp_path / "cache").iterdir())).meta["key"] == sample.meta["key"]

    result = CliRunner().invoke(
        cli,
        [
            *("bench", "fidelity", "--sources", str(folder), "--detector", "blobs.onnx"),
            *("--encoder", "test_vit", "--random-init-encoder", "--frame-stride", "1"),
            *("--pq-m", "8,16", "--cache", str(tmp_path / "cache"), "--json"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["encoder"] == "test_vit"
    assert doc["pretrained"] is False
    assert doc["sample_from_cache"] is True
    assert (doc["crops"], doc["tracks"]) == (9 * FRAMES, 9)
    assert "leave-one-clip-out over 3 clips" in doc["split"]
    assert (doc["query_vectors"], doc["queries"]) == ("decoded", 9 * FRAMES)
    assert doc["track_queries"] + doc["track_queries_skipped"] == 9 * FRAMES
    assert [r["codec"] for r in doc["results"]] == ["f32", "f16", "int8", "pq8x8", "pq16x8"]
    keys = {
        "codec", "code_bytes", "bytes_per_roi", "class_p10", "class_p10_ratio", "track_r10",
        "track_r10_ratio", "recall_10_at_10", "recall_1_at_10",
    }  # fmt: skip
    for row in doc["results"]:
        assert keys <= set(row)
    f32, pq8 = doc["results"][0], doc["results"][3]
    assert f32["class_p10_ratio"] == f32["track_r10_ratio"] == 1.0
    assert f32["recall_10_at_10"] == 1.0
    assert (f32["code_bytes"], pq8["code_bytes"]) == (4 * 64, 8)
    assert pq8["bytes_per_roi"] < f32["bytes_per_roi"]
    assert len(doc["targets"]) == 4

    # a codebook fitted elsewhere is measured as it is, beside the built-in codecs
    from shared.pq import fit_pq

    book = tmp_path / "site.npz"
    fit_pq(sample.embeddings[sample.clips < 2], m=8, seed=0).save(book)
    wrong = tmp_path / "wrong.npz"
    fit_pq(np.random.default_rng(0).standard_normal((300, 32)), m=8, seed=0).save(wrong)
    base = [
        *("bench", "fidelity", "--sources", str(folder), "--detector", "blobs.onnx"),
        *("--encoder", "test_vit", "--random-init-encoder", "--frame-stride", "1"),
        *("--pq-m", "", "--fit-clips", "road0.mp4,road1.mp4", "--cache", str(tmp_path / "cache")),
    ]
    result = CliRunner().invoke(cli, [*base, "--codebook", str(book), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["codec"]: r for r in json.loads(result.stdout)["results"]}
    assert list(rows) == ["f32", "f16", "int8", "site.npz (pq8x8)"]
    assert rows["site.npz (pq8x8)"]["code_bytes"] == 8
    assert 0 < rows["site.npz (pq8x8)"]["recall_10_at_10"] < 1
    result = CliRunner().invoke(cli, [*base, "--codebook", str(wrong), "--json"])
    assert result.exit_code != 0
    assert "codes 32-d vectors; the encoder's are 64-d" in result.output
    result = CliRunner().invoke(cli, [*base, "--codebook", str(tmp_path / "none.npz")])
    assert result.exit_code != 0
    assert "none.npz" in result.output
    assert "file not found" in result.output


def test_fidelity_names_a_missing_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["bench", "fidelity", "--sources", str(tmp_path / "nope.mp4"), "--json"]
    )
    assert result.exit_code != 0
    assert "nope.mp4 does not exist" in result.output
