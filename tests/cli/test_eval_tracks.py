"""``semcom eval tracks``: its errors (one line each), and the real clip with the real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from semcom.cli import cli

ROOT = Path(__file__).resolve().parents[2]
TRUTH = ROOT / "docs" / "data" / "cars_kraten.truth.yaml"

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["eval", "tracks", "--no-progress", *args])


def _error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert result.output.rstrip("\n").endswith(lines[0]), result.output
    return lines[0]


def test_a_set_without_a_value_is_a_usage_error(tiny_video: Path) -> None:
    result = _run("--source", str(tiny_video), "--set", "policy.relink_window_s")
    assert result.exit_code == 2
    assert _error_line(result) == (
        "Error: Invalid value for --set: 'policy.relink_window_s': expected KEY=VALUE"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clip: a.mp4\nreal_objects: 0\ncounted: cars\n", "real_objects must be an integer >= 1"),
        ("clip: a.mp4\ncounted: cars\n", "missing key(s) real_objects"),
        ("- 45\n", "expected a mapping, got list"),
    ],
)
def test_a_bad_ground_truth_is_one_precise_error(
    tiny_video: Path, tmp_path: Path, text: str, message: str
) -> None:
    truth = tmp_path / "truth.yaml"
    truth.write_text(text)
    result = _run("--source", str(tiny_video), "--truth", str(truth))
    assert result.exit_code == 1
    assert _error_line(result).startswith(f"Error: ground truth {truth}: {message}")


def test_a_bad_setting_names_the_key(tiny_video: Path) -> None:
    result = _run("--source", str(tiny_video), "--set", "policy.relink_min_cosine=2")
    assert result.exit_code == 1
    assert "policy.relink_min_cosine" in _error_line(result)


@pytest.mark.realdata
def test_the_real_clip_with_and_without_relink(shared_data: Path) -> None:
    """The first 400 frames of cars_kraten.mp4, the real detector and MobileNetV2."""
    w = shared_data / "weights"
    args = [
        "--source",
        str(shared_data / "videos" / "cars_kraten.mp4"),
        "--detector",
        str(w / "yolo11n_int8_coco_320.onnx"),
        "--encoder",
        "mobilenetv2_100",
        "--encoder-weights",
        str(w / "mobilenet_v2_imagenet" / "mobilenetv2_100_coral_dequant.safetensors"),
        "--model-kwargs",
        "pad_type=same",
        "--encoder-preprocess",
        "mean=0.5,0.5,0.5",
        "--encoder-preprocess",
        "std=0.5,0.5,0.5",
        "--truth",
        str(TRUTH),
        "--max-frames",
        "400",
        "--json",
    ]
    reports = {}
    for window in ("0", "2"):
        result = _run(*args, "--set", f"policy.relink_window_s={window}")
        assert result.exit_code == 0, result.output
        reports[window] = json.loads(result.stdout)
    off, on = reports["0"], reports["2"]
    for r in (off, on):
        assert r["frames"] == 400
        assert r["real_objects"] == 45
        assert 0 < r["confirmed_tracks"] <= r["tracker_ids"]
        assert r["first_sight_embeddings"] >= r["confirmed_tracks"]
        assert sum(r["confirmed_by_class"].values()) == r["first_sight_embeddings"]
        assert r["ids_per_real_object"] == round(r["confirmed_tracks"] / 45, 3)
        assert r["settings"]["random_init_encoder"] is False
    assert off["relinked"] == 0
    assert on["tracker_ids"] == off["tracker_ids"]  # the same detector and tracker
    # a re-linked track sends no first sight (a lost id coming back later may send one)
    assert on["first_sight_embeddings"] <= off["first_sight_embeddings"]
