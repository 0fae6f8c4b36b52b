"""The whole edge pipeline and the `semcom edge` command, on generated and real video."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.capture import VideoFileSource
from edge.config import PolicyConfig, TimmEncoderConfig, load_config
from edge.daemon import build_agent, run_agent
from edge.detect import FrameBoxes
from edge.embed import TimmEncoder
from edge.pipeline import EdgePipeline, Outbox
from edge.policy import EmissionPolicy
from edge.runner import EdgeRunner
from edge.sink import FileSink
from edge.status import StatusLine
from shared.codec import decode
from shared.framing import read_frames
from shared.messages import Embedding, Envelope, Hello, TrackSummary
from shared.vectors import CodecSet, create_codec
from tests.scripted import GroundTruthDetector

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)


def read_file(path: Path) -> list[Envelope]:
    with open(path, "rb") as fh:
        return [decode(f) for f in read_frames(fh)]


def test_pipeline_end_to_end_into_a_message_file(tiny_video: Path, tmp_path: Path) -> None:
    encoder = TimmEncoder(TimmEncoderConfig(name="test_vit", random_init=True))
    codec = create_codec("int8", encoder.dim)
    policy = EmissionPolicy(PolicyConfig(confirm_frames=3, lost_frames=5), "cam-01")
    pipeline = EdgePipeline(GroundTruthDetector(), encoder, codec, policy, 2.5)
    out = tmp_path / "m.semcom"
    sink = FileSink(out)
    outbox = Outbox("edge-01", sink)
    source = VideoFileSource(tiny_video, loop=False, pace=False, sample_fps=None)

    def hello(frame: object) -> None:
        outbox.put(0, pipeline.hello("test", frame, source.fps), control=True)  # type: ignore[arg-type]

    runner = EdgeRunner(source, pipeline, outbox, on_first_frame=hello)
    status = io.StringIO()
    with StatusLine(runner, pipeline, outbox, interval_s=0.05, random_init=True, stream=status):
        stats = runner.run(threading.Event())
    sink.close()
    last = status.getvalue().rsplit("\r\033[K", 1)[-1]
    assert last.startswith("frames 30 (")
    assert "tracks" in last
    assert "kB/s" in last
    assert "RANDOM-INIT ENCODER" in last
    assert stats.frames == 30
    envs = read_file(out)
    assert isinstance(envs[0].message, Hello)
    hello_msg = envs[0].message
    assert hello_msg.random_init_encoder is True
    assert hello_msg.cameras[0].width == 320
    assert [e.seq for e in envs[1:]] == list(range(1, len(envs)))
    embeddings = [e.message for e in envs if isinstance(e.message, Embedding)]
    assert sorted(m.track_id for m in embeddings) == [1, 2]  # one first sight per track
    codecs = CodecSet()
    ref = hello_msg.codecs[0]
    book = codecs.accept(ref.codec_id, ref.content_hash, hello_msg.embedding_dim)
    for m in embeddings:
        vector = codecs.resolve(m.codec).decode(m.code)
        assert vector.shape == (1, 64)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 0.02
    assert book.codec_id == "int8"
    ends = [e.message for e in envs if isinstance(e.message, TrackSummary)]
    assert sorted(m.track_id for m in ends) == [1, 2]  # flushed at the end of the file
    assert ends[0].frames == 30
    assert ends[0].final
    assert ends[0].path.points  # its simplified box path
    kinds = {type(e.message).__name__ for e in envs}
    assert kinds == {"Hello", "Embedding", "TrackSummary"}  # track-level: no counts or boxes
    assert sink.last_seq == envs[-1].seq  # the sink numbered them
    again = FileSink(out)  # appending continues the numbering
    assert again.last_seq == envs[-1].seq
    again.close()


def _tiny_models(command: str, video: Path, *extra: str) -> list[str]:
    """``semcom <command>`` on ``video`` with a random-init YOLO and the tiny test ViT."""
    return [
        sys.executable,
        "-m",
        "semcom",
        *command.split(),
        "--source",
        str(video),
        "--detector",
        "yolo11n.yaml",
        "--imgsz",
        "160",
        "--encoder",
        "test_vit",
        "--random-init-encoder",
        *extra,
    ]


def _edge_cmd(video: Path, out: Path, *extra: str) -> list[str]:
    return _tiny_models(
        "edge run", video, "--codec", "f16", "--out", str(out), "--no-status", *extra
    )


def test_edge_run_command(tiny_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.semcom"
    result = subprocess.run(
        _edge_cmd(tiny_video, out, "--no-pace"), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "30 frames" in result.stderr
    assert "RANDOM-INIT encoder" in result.stderr
    assert result.stdout == ""
    envs = read_file(out)
    assert isinstance(envs[0].message, Hello)
    assert envs[0].message.encoder == "test_vit"
    from click.testing import CliRunner

    from semcom.cli import cli

    summary = CliRunner().invoke(cli, ["inspect", str(out), "--json"])
    doc = json.loads(summary.output)
    assert doc["messages"] == len(envs)
    assert doc["sessions"][0]["random_init_encoder"] is True
    assert doc["duplicate_seqs"] == 0
    assert doc["damaged_tail"] is None


def test_edge_run_stops_cleanly_on_sigterm(tiny_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "sig.semcom"
    # per-frame counts on (off by default: track-level), so that records stream every frame
    env = {**os.environ, "SEMCOM_EDGE__POLICY__COUNTS_EVERY_FRAMES": "1"}
    proc = subprocess.Popen(
        _edge_cmd(tiny_video, out, "--loop"), stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size == 0):
        time.sleep(0.2)  # the first flush happens within a second of the first frame
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "SIGTERM: stopping" in stderr
    envs = read_file(out)  # every record whole: nothing cut mid-write
    assert isinstance(envs[0].message, Hello)
    assert len(envs) >= 2


def test_edge_run_reports_bad_input_in_one_line(tmp_path: Path, tiny_video: Path) -> None:
    cases = [
        (["--source", str(tmp_path / "nope.mp4")], "does not exist"),
        (["--detector", str(tmp_path / "y.pt")], "detector model not found"),
        (["--imgsz", "5"], "detector.imgsz"),
        (["--codec", "zip"], "unknown embedding codec"),
    ]
    for args, message in cases:
        cmd = _edge_cmd(tiny_video, tmp_path / "x.semcom") + args
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.realdata
def test_real_video_with_the_real_detector(shared_data: Path, tmp_path: Path) -> None:
    config = load_config(
        None,
        {
            "source.uri": str(shared_data / "videos" / "cars_kraten.mp4"),
            "source.pace": False,
            "detector.model": str(shared_data / "weights" / "yolo11n_int8_coco_320.onnx"),
            "detector.imgsz": 320,
            "encoder.name": "test_vit",
            "encoder.random_init": True,
            "sink": {"type": "file", "path": str(tmp_path / "real.semcom")},
        },
        environ={},
    )
    agent = build_agent(config, "test", max_frames=100)
    stats = run_agent(agent, threading.Event(), status=False)
    assert stats.frames == 100
    envs = read_file(tmp_path / "real.semcom")
    kinds = {type(e.message).__name__ for e in envs}
    assert {"Hello", "Embedding", "TrackSummary"} <= kinds
    assert agent.pipeline.rois > 100  # cars on every frame


class _BurstLiveSource:
    """A live source delivering frames faster than the detector below can take them."""

    live = True
    fps = 100.0

    def __init__(self, video: Path, count: int) -> None:
        from edge.capture import SourceStats

        self.frames_ = list(
            VideoFileSource(video, loop=False, pace=False, sample_fps=None).frames(
                threading.Event()
            )
        )[:count]
        self.stats = SourceStats()

    def frames(self, stop: threading.Event):  # type: ignore[no-untyped-def]
        for frame in self.frames_:
            time.sleep(0.005)
            yield frame


class _SlowDetector(GroundTruthDetector):
    def track(self, image: np.ndarray) -> FrameBoxes:
        time.sleep(0.03)
        return super().track(image)


def test_live_source_drops_frames_instead_of_lagging(tiny_video: Path, tmp_path: Path) -> None:
    encoder = TimmEncoder(TimmEncoderConfig(name="test_vit", random_init=True))
    policy = EmissionPolicy(PolicyConfig(), "cam-01")
    pipeline = EdgePipeline(_SlowDetector(), encoder, create_codec("f16", encoder.dim), policy, 2.5)
    outbox = Outbox("edge-01", FileSink(tmp_path / "live.semcom"))
    runner = EdgeRunner(_BurstLiveSource(tiny_video, 30), pipeline, outbox)
    stats = runner.run(threading.Event())
    assert stats.dropped_frames > 5
    assert stats.frames + stats.dropped_frames == 30  # every frame processed or counted


def test_botsort_tracker_option(tiny_video: Path, tmp_path: Path) -> None:
    import cv2

    from edge.config import DetectorConfig
    from edge.detect import Detector

    detector = Detector(
        DetectorConfig(
            model="yolo11n.yaml", imgsz=160, tracker="botsort", settings_dir=tmp_path / "yolo"
        )
    )
    ok, image = cv2.VideoCapture(str(tiny_video)).read()
    assert ok
    assert isinstance(detector.track(image), FrameBoxes)


def test_embed_sample_without_detections_is_a_clear_error(tiny_video: Path, tmp_path: Path) -> None:
    cmd = _tiny_models("edge embed-sample", tiny_video, "--out", str(tmp_path / "s.npz"))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "no detections in the source" in result.stderr


@pytest.mark.realdata
def test_embed_sample_on_real_video(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.npz"
    cmd = [
        sys.executable,
        "-m",
        "semcom",
        "edge",
        "embed-sample",
        "--source",
        str(shared_data / "videos" / "cars_kraten.mp4"),
        "--detector",
        str(shared_data / "weights" / "yolo11n_int8_coco_320.onnx"),
        "--imgsz",
        "320",
        "--encoder",
        "test_vit",
        "--random-init-encoder",
        "--max-embeddings",
        "40",
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with np.load(out) as data:
        assert data["embeddings"].shape == (40, 64)
        assert "RANDOM-INIT" in str(data["description"])


def test_bench_edge_json(tiny_video: Path) -> None:
    cmd = _tiny_models("bench edge", tiny_video, "--frames", "20", "--json")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # stdout holds exactly one JSON object
    for key in (
        "fps",
        "bare_fps",
        "ratio",
        "rois_per_s",
        "embeddings_per_s",
        "messages_per_s",
        "bytes_per_s",
        "paper_bytes_per_s",
        "frames",
        "random_init_encoder",
        "stages",
    ):
        assert key in doc, key
    assert doc["frames"] == 20
    assert doc["random_init_encoder"] is True
    assert doc["encoder_runtime"] == "onnx-int8"
    assert doc["fps"] > 0
    assert doc["ratio"] == pytest.approx(doc["fps"] / doc["bare_fps"], rel=0.01)
    assert {"capture", "detect", "policy"} <= set(doc["stages"])
    assert all({"p50_ms", "p95_ms"} <= set(v) for v in doc["stages"].values())
