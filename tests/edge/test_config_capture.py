"""Configuration (file < env < flags, precise errors) and frame sources."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture import ImageFolderSource, LiveSource, VideoFileSource, open_source
from edge.config import EdgeConfig, OnnxEncoderConfig, SourceConfig, load_config
from edge.crops import extract_crops
from edge.errors import ConfigError, SourceError


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(
        "edge_id: junction-7\nsource: {uri: a.mp4, camera_id: cam-7}\n"
        "detector: {imgsz: 480, conf: 0.3}\nencoder: {name: vit_small_patch16_224}\n"
    )
    env = {"SEMCOM_EDGE__DETECTOR__IMGSZ": "320", "SEMCOM_EDGE__POLICY__CONFIRM_FRAMES": "5"}
    config = load_config(path, {"detector.conf": 0.5}, environ=env)
    assert config.edge_id == "junction-7"
    assert config.source.camera_id == "cam-7"
    assert config.detector.imgsz == 320  # env beats file
    assert config.detector.conf == 0.5  # flag beats file
    assert config.policy.confirm_frames == 5
    assert config.encoder.type == "timm"
    assert config.encoder.name == "vit_small_patch16_224"


def test_onnx_encoder_by_discriminator() -> None:
    config = load_config(
        None, {"source.uri": "x", "encoder.type": "onnx", "encoder.path": "enc.onnx"}, environ={}
    )
    assert isinstance(config.encoder, OnnxEncoderConfig)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("source: {uri: a.mp4}\ndetector: {imgsz: 8}\n", "detector.imgsz: Input should be greater"),
        ("source: {uri: a.mp4}\nbogus: 1\n", "bogus: Extra inputs are not permitted"),
        ("source: {uri: a.mp4}\nedge_id: 'bad id'\n", "edge_id: String should match pattern"),
        ("detector: {}\n", "source: Field required"),
        ("source: [1, 2\n", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping"),
        ("source: {uri: a.mp4}\nencoder: {type: tensorrt}\n", "encoder: Input tag 'tensorrt'"),
    ],
)
def test_invalid_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(path, environ={})


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Path("/nonexistent/edge.yaml"), environ={})


def test_every_field_is_described() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            if not field.description and name != "type":
                missing.append(f"{model.__name__}.{name}")
        return missing

    from edge import config as c

    models = [
        c.SourceConfig,
        c.DetectorConfig,
        c.TimmEncoderConfig,
        c.OnnxEncoderConfig,
        c.CropConfig,
        c.PolicyConfig,
        c.FileSinkConfig,
    ]
    assert [m for model in models for m in walk(model)] == []
    assert EdgeConfig.model_fields["codec"].description


def _frames(source: object, stop: threading.Event | None = None) -> list[object]:
    return list(source.frames(stop or threading.Event()))  # type: ignore[attr-defined]


def test_video_file_all_frames_sampled_and_looped(tiny_video: Path) -> None:
    frames = _frames(VideoFileSource(tiny_video, loop=False, pace=False, sample_fps=None))
    assert len(frames) == 30
    first, second = frames[0], frames[1]
    assert first.image.shape == (192, 320, 3)  # type: ignore[attr-defined]
    assert second.capture_ts_us - first.capture_ts_us == 40_000  # type: ignore[attr-defined]
    sampled = _frames(VideoFileSource(tiny_video, loop=False, pace=False, sample_fps=5))
    assert [f.index for f in sampled] == [0, 5, 10, 15, 20, 25]  # type: ignore[attr-defined]
    stop = threading.Event()
    looped = VideoFileSource(tiny_video, loop=True, pace=False, sample_fps=None).frames(stop)
    got = [next(looped) for _ in range(75)]
    stop.set()
    assert [f.index for f in got[28:32]] == [28, 29, 30, 31]
    assert all(b.capture_ts_us > a.capture_ts_us for a, b in itertools.pairwise(got))


def test_pacing_follows_the_file_rate(tiny_video: Path) -> None:
    start = time.monotonic()
    frames = _frames(VideoFileSource(tiny_video, loop=False, pace=True, sample_fps=None))
    assert len(frames) == 30
    assert time.monotonic() - start >= 29 / 25 * 0.95


def test_image_folder(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    source = ImageFolderSource(tmp_path, loop=False, pace=False, fps=None)
    frames = _frames(source)
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100]  # type: ignore[attr-defined]
    assert source.stats.read_errors == 1


def test_broken_stream_is_retried_with_backoff_not_fatal(tmp_path: Path) -> None:
    source = LiveSource(str(tmp_path / "gone.mp4"), sample_fps=None, backoff=(0.05, 0.2))
    stop = threading.Event()
    timer = threading.Timer(0.6, stop.set)
    timer.start()
    assert _frames(source, stop) == []
    timer.join()
    assert source.stats.reconnects >= 3
    assert "cannot open" in source.stats.last_error


def test_open_source_dispatch_and_errors(tiny_video: Path, tmp_path: Path) -> None:
    assert isinstance(open_source(SourceConfig(uri=str(tiny_video))), VideoFileSource)
    assert isinstance(open_source(SourceConfig(uri="0")), LiveSource)
    assert isinstance(open_source(SourceConfig(uri="rtsp://cam.local/stream")), LiveSource)
    with pytest.raises(SourceError, match="does not exist"):
        open_source(SourceConfig(uri=str(tmp_path / "missing.mp4")))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(SourceError, match=r"unsupported file type '\.txt'"):
        open_source(SourceConfig(uri=str(tmp_path / "x.txt")))
    with pytest.raises(SourceError, match="no images"):
        open_source(SourceConfig(uri=str(tmp_path)))


def test_extract_crops_follow_the_paper_rule() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[95:105, 90:110] = (255, 0, 0)  # a blue (BGR) 20x10 box centred at (100, 100)
    crops = extract_crops(frame, np.asarray([[90, 95, 110, 105]], np.float32), 50, 2.5, "nearest")
    assert crops.shape == (1, 50, 50, 3)
    # The square region is [75, 125) x [75, 125): the box fills rows 20..29, cols 15..34.
    blue = crops[0, :, :, 2] == 255  # RGB order out
    rows, cols = np.nonzero(blue)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 29, 15, 34)


def test_deploy_example_config_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "deploy" / "edge.example.yaml"
    config = load_config(path, environ={})
    assert config.edge_id == "junction-7"
    assert isinstance(config.encoder, OnnxEncoderConfig)
    assert config.uplink is not None
    assert config.uplink.max_rate == 200_000.0
    assert config.uplink.spool_max_bytes == 256 * 1024 * 1024
    token = load_config(path, environ={"SEMCOM_EDGE__UPLINK__TOKEN": "from-env"}).uplink
    assert token is not None
    assert token.token.get_secret_value() == "from-env"


def test_deploy_lean_config_only_thins_the_emission() -> None:
    path = Path(__file__).resolve().parents[2] / "deploy" / "edge.lean.yaml"
    given = {"source.uri": "clip.mp4", "uplink.cloud": "https://cloud.example", "uplink.token": "t"}
    lean = load_config(path, given, environ={})  # as --source, --cloud and --token give it
    p, d = lean.policy, type(lean.policy)()
    assert p.confirm_frames > d.confirm_frames
    assert (p.counts_every_frames, p.detections_every_frames) == (0, 0)  # track-level, as d
    assert (d.counts_every_frames, d.detections_every_frames) == (0, 0)
    assert p.path_tolerance_px > d.path_tolerance_px
    assert p.path_grid > d.path_grid
    assert p.summary_every_s > d.summary_every_s
    assert p.keyframe_interval_s > d.keyframe_interval_s
    assert lean.codec == "int8"
    assert p.drift_threshold > d.drift_threshold
    assert p.check_interval_s > d.check_interval_s
    assert lean.uplink is not None
    default_linger = type(lean.uplink).model_fields["bundle_linger_ms"].default
    assert lean.uplink.bundle_linger_ms > default_linger


def test_live_source_reopens_after_the_stream_ends(tiny_video: Path) -> None:
    # A file opened as a "stream" ends after 30 frames, like a camera that drops the connection.
    source = LiveSource(str(tiny_video), sample_fps=None, backoff=(0.05, 0.1))
    stop = threading.Event()
    frames = source.frames(stop)
    got = [next(frames) for _ in range(45)]
    stop.set()
    assert source.stats.reconnects == 1
    assert "stopped delivering frames" in source.stats.last_error
    assert [f.index for f in got[28:32]] == [28, 29, 30, 31]  # numbering continues
