"""Payload sizes measured on a generated video through the real edge pipeline, a recorded
message file, and the ``semcom sim`` command end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge.config import PolicyConfig, TimmEncoderConfig
from edge.embed import TimmEncoder
from edge.pipeline import EdgePipeline, Outbox
from edge.policy import EmissionPolicy
from edge.sink import FileSink
from semcom.cli import cli
from shared.messages import Message
from shared.vectors import create_codec
from sim.bundling import bundle_sizes
from sim.measure import Recording, measure_video, read_message_file
from sim.strategies import RAW_2048_FRAME_BYTES, build_payloads, headline
from tests.conftest import write_video
from tests.scripted import GroundTruthDetector

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)

FRAMES = 30
SIZE = (320, 192)


def _pipeline() -> EdgePipeline:
    encoder = TimmEncoder(TimmEncoderConfig(name="test_vit", random_init=True))
    policy = EmissionPolicy(PolicyConfig(confirm_frames=3, lost_frames=5), "cam-01")
    return EdgePipeline(
        GroundTruthDetector(), encoder, create_codec("f16", encoder.dim), policy, 2.5
    )


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, EdgePipeline]:
    video = write_video(tmp_path_factory.mktemp("sim") / "road.mp4", FRAMES, SIZE)
    pipeline = _pipeline()
    return measure_video(video, pipeline), pipeline


def test_every_strategy_is_measured_on_the_same_frames(
    recording: tuple[Recording, EdgePipeline],
) -> None:
    rec, _ = recording
    assert rec.frames == FRAMES
    assert (rec.width, rec.height) == SIZE
    assert len(rec.rois) == 2 * FRAMES
    assert len(rec.crop_jpeg_bytes) == 2 * FRAMES
    assert rec.random_init
    p = {x.name: x for x in build_payloads(rec, ("f32", "f16", "int8"), ("f16", "int8"))}
    raw_frame = SIZE[0] * SIZE[1] * 3
    assert p["raw"].total_bytes == raw_frame * FRAMES
    assert p["raw"].bytes_per_s == pytest.approx(raw_frame * 25)
    assert 0 < p["jpeg"].total_bytes < p["raw"].total_bytes
    assert 0 < p["h264"].total_bytes < p["jpeg"].total_bytes  # motion-compensated
    assert p["h264"].total_bytes == rec.h264_total_bytes
    # the paper: 768-d float32 per RoI, every frame (two RoIs per frame)
    paper = p["paper"]
    assert len(paper.sizes) == FRAMES
    # (zstd takes a few % off float32 codes: their exponent bytes repeat)
    assert 0.9 * 2 * 768 * 4 < paper.bytes_per_frame < 2 * (768 * 4 + 200)
    # semcom: track-aware (two tracks, embedded once each), far below every RoI every frame
    sem = p["semcom"]
    # as the uplink sends them: bundle frames, smaller than the single frames
    items = [(s.t_s, s.message) for s in rec.messages]
    bundled = bundle_sizes(items, rec.bundling, rec.t0_us)
    assert sem.total_bytes == sum(n for _, n in bundled)
    assert len(sem.sizes) == len(bundled) < len(rec.messages)
    assert sem.total_bytes < sum(s.size for s in rec.messages)
    assert sum(s.kind == "Embedding" for s in rec.messages) == 2
    assert sem.total_bytes < p["semcom-f16-all-rois"].total_bytes < paper.total_bytes
    assert p["semcom-f32"].total_bytes > p["semcom-f16"].total_bytes > p["semcom-int8"].total_bytes
    assert abs(p["semcom-f16"].total_bytes - sem.total_bytes) < 20  # same messages, re-encoded
    ladder = p["semcom-ladder"]
    assert ladder.rungs == ("f16", "int8")
    assert ladder.rung_sizes is not None
    assert (ladder.rung_sizes[:, 0] >= 0).sum() == 2
    h = headline(paper, p["raw"], p["h264"])
    assert h.reduction_vs_2048_pct == pytest.approx(
        100 * (1 - paper.bytes_per_frame / RAW_2048_FRAME_BYTES)
    )
    assert h.reduction_vs_raw_pct == pytest.approx(100 * (1 - paper.total_bytes / (raw_frame * 30)))


def items(rec: Recording) -> list[tuple[float, Message]]:
    return [(s.t_s, s.message) for s in rec.messages]


def _write_message_file(rec: Recording, pipeline: EdgePipeline, path: Path) -> None:
    """What `semcom edge run --out` writes: Hello, then every message (real outbox + sink)."""
    from edge.capture import Frame

    sink = FileSink(path)
    outbox = Outbox("edge-01", sink)
    t0 = time.time_ns() // 1_000  # the wire carries the send time relative to capture
    first = Frame(np.zeros((SIZE[1], SIZE[0], 3), np.uint8), 0, t0)
    outbox.put(t0, pipeline.hello("test", first, 25.0), control=True)
    for sent in rec.messages:
        outbox.put(t0 + round(sent.t_s * 1e6), sent.message)
    sink.close()


def test_a_recorded_message_file_gives_the_semcom_strategies(
    recording: tuple[Recording, EdgePipeline], tmp_path: Path
) -> None:
    rec, pipeline = recording
    path = tmp_path / "m.semcom"
    _write_message_file(rec, pipeline, path)
    again = read_message_file(path)
    assert again.dim == rec.dim
    assert again.random_init
    assert again.codec_id == "f16"
    assert (again.width, again.height, again.fps) == (SIZE[0], SIZE[1], 25.0)
    names = {p.name: p for p in build_payloads(again, ("int8",), ())}
    assert "raw" not in names
    assert "semcom-int8" in names
    recorded = sum(n for _, n in bundle_sizes(items(rec), rec.bundling, rec.t0_us))
    assert abs(names["semcom"].total_bytes - recorded) <= 4 * len(rec.messages)


def test_the_sim_command_writes_a_report_from_a_message_file(
    recording: tuple[Recording, EdgePipeline], tmp_path: Path
) -> None:
    rec, pipeline = recording
    messages = tmp_path / "m.semcom"
    _write_message_file(rec, pipeline, messages)
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(
        "profiles: [constrained-256k, {name: slow, rate_bps: 64kbit, rtt_ms: 300, loss: 0.01}]\n"
        "cameras: [1, 3]\nduration_s: 3\nsearch_duration_s: 2\ndrain_s: 1\nmax_cameras: 20\n"
        "strategies: {codecs: [int8], ladder: [f16, int8]}\n"
    )
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli,
        ["sim", "run", "--scenario", str(scenario), "--messages", str(messages), "--out",
         str(out), "--json", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["random_init_encoder"] is True
    assert "RANDOM-INIT" in doc["warning"]
    assert {s["name"] for s in doc["strategies"]} == {"semcom", "semcom-int8", "semcom-ladder"}
    assert [link["profile"] for link in doc["links"]] == ["constrained-256k", "slow"]
    assert any(c["strategy"] == "semcom" for c in doc["links"][0]["capacity"])
    for name in ("report.md", "strategies.csv", "runs.csv", "capacity.csv", "bytes.png"):
        assert (out / name).stat().st_size > 0
    assert "RANDOM-INIT ENCODER" in (out / "report.md").read_text()

    bad = CliRunner().invoke(cli, ["sim", "run", "--scenario", "nope", "--messages", str(messages)])
    assert bad.exit_code != 0
    assert "no scenario 'nope'" in bad.output


def test_the_profiles_command_lists_presets_and_checks_a_file(tmp_path: Path) -> None:
    ok = CliRunner().invoke(cli, ["sim", "profiles"])
    assert ok.exit_code == 0
    assert "nb-iot" in ok.output
    assert "source:" in ok.output
    bad = tmp_path / "p.yaml"
    bad.write_text("- {name: x, rate_bps: 1mbit, rtt_ms: -1}\n")
    res = CliRunner().invoke(cli, ["sim", "profiles", "--file", str(bad)])
    assert res.exit_code != 0
    assert "rtt_ms: Input should be greater than or equal to 0" in res.output


@pytest.mark.realdata
def test_the_paper_comparison_on_the_real_clip(shared_data: Path, tmp_path: Path) -> None:
    """The real detector on cars_kraten (40 frames) and a tiny random-init ViT."""
    detector = shared_data / "weights" / "yolo11n_int8_coco_320.onnx"
    if not detector.is_file():
        pytest.skip(f"{detector} is not there")
    scenario = tmp_path / "real.yaml"
    scenario.write_text(
        "profiles: [lte]\ncameras: [1]\nduration_s: 3\nsearch_duration_s: 2\ndrain_s: 1\n"
        "max_cameras: 20\nstrategies: {codecs: [int8], ladder: []}\n"
    )
    result = CliRunner().invoke(
        cli,
        ["sim", "run", "--scenario", str(scenario), "--source",
         str(shared_data / "videos" / "cars_kraten.mp4"), "--detector", str(detector),
         "--imgsz", "320", "--encoder", "test_vit", "--random-init-encoder", "--max-frames",
         "40", "--out", str(tmp_path / "out"), "--json", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    s = {x["name"]: x for x in doc["strategies"]}
    assert {"raw", "jpeg", "h264", "jpeg_crops", "paper", "semcom"} <= set(s)
    assert doc["rois"] > 0
    assert doc["random_init_encoder"] is True
    assert 99.0 < s["paper"]["reduction_vs_2048_pct"] < 100.0
    assert s["semcom"]["bytes_per_s"] < s["paper"]["bytes_per_s"] < s["raw"]["bytes_per_s"]
