"""`semcom cloud train-decoder`, `semcom eval reconstruction` and their dataset builder."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.typing import NDArray

from edge.config import DetectorConfig, SourceConfig, TimmEncoderConfig, TrackingConfig
from edge.detect import FrameBoxes
from semcom.cli import cli
from semcom.decoder_data import BuildSpec, build_dataset, cache_path

TINY = "vit_tiny_patch16_224"


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """The commands set torch's (process-wide) thread count: give it back to other tests."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    "args", [["cloud"], ["cloud", "train-decoder"], ["eval"], ["eval", "reconstruction"]]
)
def test_help(args: list[str]) -> None:
    assert "Usage:" in run(*args, "--help")


def test_cloud_group_keeps_every_cloud_command() -> None:
    from cloud.cli import cloud

    out = run("cloud", "--help")
    for name in [*cloud.commands, "train-decoder"]:
        assert name in out


class BlobDetector:
    """Finds the two coloured rectangles of ``tests.conftest.write_video`` (a real
    ``TrackingDetector``: the generated frames hold nothing a COCO model would detect)."""

    name = "blobs"

    def track(self, image: NDArray[np.uint8]) -> FrameBoxes:
        boxes, ids = [], []
        for track_id, mask in ((1, image[..., 2] > 150), (2, image[..., 0] > 150)):
            ys, xs = np.nonzero(mask)
            if len(xs):
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                ids.append(track_id)
        n = len(ids)
        return FrameBoxes(
            np.asarray(boxes, np.float32).reshape(n, 4),
            np.full(n, 2, np.int64),
            np.ones(n, np.float32),
            np.asarray(ids, np.int64),
        )

    def reset(self) -> None:
        pass


def _spec(video: Path, size: int = 64) -> BuildSpec:
    return BuildSpec(
        sources=(str(video),),
        detector=DetectorConfig(model="blobs.yaml"),
        encoder=TimmEncoderConfig(name=TINY, random_init=True, runtime="torch"),
        codec="int8",
        image_size=size,
        sample_fps=5.0,
    )


def test_builder_uses_the_edge_code_and_caches(tiny_video: Path, tmp_path: Path) -> None:
    from edge.capture import open_source
    from edge.crops import extract_crops
    from edge.embed import TimmEncoder
    from shared.vectors import create_codec

    spec = _spec(tiny_video)
    dataset, path, cached = build_dataset(spec, tmp_path, progress=False, detector=BlobDetector())
    assert not cached
    assert path == cache_path(spec, tmp_path)
    assert path.is_file()
    assert len(dataset) == 12  # 30 frames at 25 fps sampled at 5 fps, two objects each
    assert dataset.crops.shape == (12, 64, 64, 3)
    assert sorted(set(dataset.groups.tolist())) == [1, 2]  # one group per track
    m = dataset.meta
    assert (m.encoder, m.embed_dim, m.random_init, m.codec, m.code_bytes) == (
        TINY, 192, True, "int8", 196,
    )  # fmt: skip
    assert m.frames == 6
    assert m.runtime == "torch"
    assert m.detector == "blobs"

    # the same pairs as the edge's own code makes them, through the codec
    frame = next(iter(open_source(SourceConfig(uri=str(tiny_video), pace=False)).frames(
        threading.Event())))  # fmt: skip
    encoder = TimmEncoder(TimmEncoderConfig(name=TINY, random_init=True, runtime="torch"))
    crops = extract_crops(frame.image, BlobDetector().track(frame.image).xyxy, 224, 2.5, "bicubic")
    codec = create_codec("int8", 192)
    expected = codec.decode(codec.encode(encoder.embed(crops)))
    assert np.allclose(dataset.embeddings[:2], expected, atol=2e-3)

    again, _, cached = build_dataset(spec, tmp_path, progress=False, detector=BlobDetector())
    assert cached
    assert np.array_equal(again.crops, dataset.crops)
    assert cache_path(_spec(tiny_video, 128), tmp_path) != path
    retracked = spec.detector.model_copy(update={"tracking": TrackingConfig(track_buffer=90)})
    assert cache_path(replace(spec, detector=retracked), tmp_path) != path


def test_empty_sources_are_refused(tiny_video: Path, tmp_path: Path) -> None:
    """A real (untrained) ultralytics model finds nothing in the generated video."""
    out = CliRunner().invoke(
        cli,
        ["cloud", "train-decoder", "--source", str(tiny_video), "--detector", "yolo11n.yaml",
         "--imgsz", "160", "--encoder", TINY, "--random-init-encoder", "--encoder-runtime",
         "torch", "--sample-fps", "2", "--out", str(tmp_path / "out"), "--cache-dir",
         str(tmp_path / "cache"), "--no-progress"],
    )  # fmt: skip
    assert out.exit_code == 1
    assert "nothing to train on" in out.output
    assert list((tmp_path / "cache").glob("crops-64px-*.npz"))  # cached all the same


@pytest.mark.realdata
def test_train_and_evaluate_on_the_shared_video(shared_data: Path, tmp_path: Path) -> None:
    detector = shared_data / "weights" / "yolo11n_int8_coco_320.onnx"
    if not detector.is_file():
        pytest.skip(f"{detector} is absent")
    video = str(shared_data / "videos" / "cars_kraten.mp4")
    common = ["--sample-fps", "1", "--max-crops", "24", "--cache-dir", str(tmp_path / "cache")]
    out = run(
        "cloud", "train-decoder", "--source", video, "--detector", str(detector),
        "--encoder", TINY, "--random-init-encoder", "--encoder-runtime", "torch",
        "--codec", "int8", "--epochs", "1", "--batch-size", "8", "--width", "8", "--threads", "1",
        "--out", str(tmp_path / "dec"), "--no-progress", *common,
    )  # fmt: skip
    assert "RANDOM-INIT" in out
    assert (tmp_path / "dec" / "best.pt").is_file()
    report = json.loads(
        run(
            "eval",
            "reconstruction",
            "--decoder",
            str(tmp_path / "dec" / "best.pt"),
            "--source",
            video,
            "--encoder-runtime",
            "torch",
            "--out",
            str(tmp_path / "eval"),
            "--json",
            "--no-progress",
            *common,
        )
    )
    assert report["random_init_encoder"] is True
    assert "RANDOM-INIT" in report["note"]
    assert report["code_bytes"] == 196
    assert report["evaluated"].startswith("objects held out")
    assert report["crops"] >= 1
    assert 0 < report["rebuilt_ssim"] <= 1
    if report["jpeg_fits"]:
        assert report["jpeg_mean_bytes"] <= 196
    assert (tmp_path / "eval" / "grid.png").is_file()
