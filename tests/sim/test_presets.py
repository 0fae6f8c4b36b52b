"""Two emission presets measured on one pass over a generated video (the real pipeline, policy,
random-init ViT, codecs and framing; a scripted detector), their fidelity and warm-up in the
report, and ``semcom sim run --codebook`` on the real clip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge.config import PolicyConfig, TimmEncoderConfig
from edge.detect import FrameBoxes
from edge.embed import TimmEncoder
from edge.pipeline import EdgePipeline
from edge.policy import EmissionPolicy
from semcom.cli import cli
from shared.pq import fit_pq
from shared.vectors import create_codec
from sim.measure import Recording, measure_video
from sim.report import write_report
from sim.runner import simulate_scenario
from sim.scenarios import load_scenario
from sim.strategies import build_payloads
from tests.conftest import write_video
from tests.scripted import GroundTruthDetector

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)

FRAMES = 30
SIZE = (320, 192)


class CountingDetector(GroundTruthDetector):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def track(self, image: np.ndarray) -> FrameBoxes:
        self.calls += 1
        return super().track(image)


class CountingEncoder(TimmEncoder):
    crops = 0

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.crops += len(crops)
        return super().embed(crops)


@pytest.fixture(scope="module")
def two_presets(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Recording, CountingDetector, CountingEncoder]:
    video = write_video(tmp_path_factory.mktemp("presets") / "road.mp4", FRAMES, SIZE)
    detector = CountingDetector()
    encoder = CountingEncoder(TimmEncoderConfig(name="test_vit", random_init=True))
    default = EdgePipeline(
        detector,
        encoder,
        create_codec("f16", encoder.dim),
        EmissionPolicy(
            PolicyConfig(
                confirm_frames=3, lost_frames=5, counts_every_frames=1, detections_every_frames=5
            ),
            "cam-01",
        ),
        2.5,
    )
    lean_policy = PolicyConfig(
        confirm_frames=3, lost_frames=5, counts_every_frames=0, detections_every_frames=0
    )
    lean = EdgePipeline(
        GroundTruthDetector(),  # never called: the lean pass gets the first pass's boxes
        encoder,
        create_codec("int8", encoder.dim),
        EmissionPolicy(lean_policy, "cam-01"),
        2.5,
    )
    rec = measure_video(video, default, extra={"semcom-lean": lean})
    return rec, detector, encoder


def test_both_presets_share_detections_and_embeddings(
    two_presets: tuple[Recording, CountingDetector, CountingEncoder],
) -> None:
    rec, detector, encoder = two_presets
    assert detector.calls == FRAMES  # detected once per frame for both presets
    [lean] = rec.streams
    assert lean.name == "semcom-lean"
    assert lean.codec_id == "int8"
    sent = [s for s in rec.messages if s.kind == "Embedding"]
    lean_sent = [s for s in lean.messages if s.kind == "Embedding"]
    assert len(sent) == len(lean_sent) == 2  # first sight of both tracks, same frame
    # the lean pass asked for the same crops: embedded once, reused once; besides, the tracked
    # boxes of every 5th frame are embedded as fresh sightings (sim/queries.py)
    assert len(rec.queries.rows) == 12  # frames 0, 5, ..., 25: both tracks
    assert encoder.crops == rec.embeds_computed == 2 + 12
    assert rec.embeds_reused == 2
    for a, b in zip(sent, lean_sent, strict=True):
        assert a.original is not None
        assert b.original is not None
        np.testing.assert_array_equal(a.original, b.original)
    # each policy's own ids for every RoI (after re-linking): the fidelity reference
    assert rec.roi_track_ids is not None
    assert len(rec.roi_track_ids) == len(rec.rois)
    assert lean.roi_track_ids is not None
    assert set(lean.roi_track_ids) == {1, 2}
    kinds = {s.kind for s in lean.messages}
    assert "Embedding" in kinds
    assert kinds & {"TrackEnd", "TrackSummary"}
    assert not any(s.kind == "Detections" for s in lean.messages)
    assert sum(s.kind == "Detections" for s in rec.messages) == FRAMES // 5


def test_each_preset_has_bytes_fidelity_and_warmup(
    two_presets: tuple[Recording, CountingDetector, CountingEncoder],
) -> None:
    rec = two_presets[0]
    p = {x.name: x for x in build_payloads(rec, ("int8",), ())}
    sem, lean = p["semcom"], p["semcom-lean"]
    assert 0 < lean.total_bytes < sem.total_bytes
    assert sem.fidelity is not None
    assert lean.fidelity is not None
    # straight motion: boxes every 5 frames, or the track's end summary alone, redraw it
    for fid in (sem.fidelity, lean.fidelity):
        assert fid.path_rmse_pct is not None
        assert fid.path_rmse_pct < 0.5
        assert fid.path_frames == 2 * FRAMES
        assert fid.objects_in_view_error == pytest.approx(0.0)
    assert sem.fidelity.confirmed_exact
    assert lean.fidelity.confirmed_exact
    assert sem.fidelity.track_r10_ratio is None  # one embedding per track: nothing to find
    assert sem.warmup is not None
    assert lean.warmup is not None
    assert sem.warmup.rung == "int8"
    assert sem.warmup.embeddings_per_s == pytest.approx(2 / rec.duration_s)
    assert sem.warmup.seconds == pytest.approx(4096 / sem.warmup.embeddings_per_s)
    assert 0 < lean.warmup.bytes_per_s < sem.warmup.bytes_per_s
    assert p["semcom-int8"].fidelity is not None
    assert p["semcom-int8"].warmup is None
    assert p["h264"].fidelity is None


def test_the_report_shows_bytes_next_to_meaning(
    two_presets: tuple[Recording, CountingDetector, CountingEncoder], tmp_path: Path
) -> None:
    rec = two_presets[0]
    scenario_file = tmp_path / "tiny.yaml"
    scenario_file.write_text(
        "profiles: [lte]\ncameras: [1]\nduration_s: 2\nsearch_duration_s: 1\ndrain_s: 1\n"
        "max_cameras: 4\ncapacity_strategies: []\nstrategies: {codecs: [int8], ladder: []}\n"
    )
    doc = write_report(simulate_scenario(load_scenario(str(scenario_file)), rec), tmp_path / "r")
    s = {x["name"]: x for x in doc["strategies"]}
    for name in ("semcom", "semcom-lean"):
        assert s[name]["pct_of_h264"] == pytest.approx(
            100 * s[name]["bytes_per_s"] / s["h264"]["bytes_per_s"], rel=1e-3
        )
        fid = s[name]["fidelity"]
        assert {"objects_in_view_error", "path_rmse_pct", "track_r10_ratio"} <= set(fid)
        assert fid["confirmed_tracks"] == {
            "exact": True,
            "reference": {"2": 1, "7": 1},
            "estimate": {"2": 1, "7": 1},
        }
        assert s[name]["warmup"]["vectors_needed"] == 4096
        assert s[name]["warmup"]["bytes"] > 0
    assert "fidelity" in s["semcom-int8"]
    assert "fidelity" not in s["jpeg"]
    assert doc["targets"]["semcom_lean_objects_in_view_error_at_most_5pct"] is True
    assert set(doc["bytes_per_s_by_message"]) == {"semcom", "semcom-lean"}
    page = (tmp_path / "r" / "report.md").read_text()
    assert "| `semcom-lean` |" in page
    assert "Warm-up" in page
    header = (tmp_path / "r" / "strategies.csv").read_text().splitlines()[0]
    assert "path_rmse_pct" in header
    assert "warmup_seconds" in header


def test_codebook_errors_are_precise(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", 5, SIZE)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a codebook")
    res = CliRunner().invoke(
        cli,
        ["sim", "run", "--source", str(video), "--detector", "x.onnx", "--codebook", str(bad),
         "--no-progress", "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert res.exit_code != 0
    assert f"codebook {bad}" in res.output
    messages = tmp_path / "m.semcom"
    messages.write_bytes(b"")
    res = CliRunner().invoke(
        cli, ["sim", "run", "--messages", str(messages), "--codebook", str(bad)]
    )
    assert res.exit_code == 2
    assert "--codebook and --lean-preset need --source" in res.output


@pytest.mark.realdata
def test_sim_run_with_a_codebook_on_the_real_clip(shared_data: Path, tmp_path: Path) -> None:
    """The real detector on 60 frames of cars_kraten, a random-init ViT, each preset coded with
    one of two codebooks fitted on random vectors (the bytes are the point here, not recall):
    the default takes the 64-byte one, the lean preset (``uplink.codebook_max_bytes: 32``) the
    8-byte one."""
    detector = shared_data / "weights" / "yolo11n_int8_coco_320.onnx"
    dim = TimmEncoder(TimmEncoderConfig(name="test_vit", random_init=True)).dim
    vectors = np.random.default_rng(0).standard_normal((2000, dim)).astype(np.float32)
    codebook = tmp_path / "pq.npz"
    fit_pq(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), m=8).save(codebook)
    large = tmp_path / "pq64.npz"
    fit_pq(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), m=64).save(large)
    scenario = tmp_path / "real.yaml"
    scenario.write_text(
        "profiles: [lte]\ncameras: [1]\nduration_s: 2\nsearch_duration_s: 1\ndrain_s: 1\n"
        "max_cameras: 4\ncapacity_strategies: []\nstrategies: {codecs: [], ladder: []}\n"
    )
    result = CliRunner().invoke(
        cli,
        ["sim", "run", "--scenario", str(scenario), "--source",
         str(shared_data / "videos" / "cars_kraten.mp4"), "--detector", str(detector),
         "--imgsz", "320", "--encoder", "test_vit", "--random-init-encoder", "--max-frames",
         "60", "--codebook", str(codebook), "--codebook", str(large), "--warmup-vectors", "100",
         "--out",
         str(tmp_path / "out"), "--json", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["codec"] == "pq64x8"
    s = {x["name"]: x for x in doc["strategies"]}
    assert "pq64x8" in s["semcom"]["description"]
    assert "pq8x8" in s["semcom-lean"]["description"]
    for name in ("semcom", "semcom-lean"):
        warm = s[name]["warmup"]
        assert warm["vectors_needed"] == 100
        assert warm["bytes_per_s"] > s[name]["bytes_per_s"]  # int8 codes cost more than PQ's
        assert s[name]["fidelity"]["path_rmse_pct"] is not None
    assert s["semcom-lean"]["bytes_per_s"] < s["semcom"]["bytes_per_s"]
