"""``semcom eval analytics``: its errors (one line each), and a real clip with the real detector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cloud.describe.schema import COCO_NAMES
from semcom.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SCENE = ROOT / "deploy" / "scenes" / "cars_kraten.yaml"


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["eval", "analytics", "--no-progress", *args])


def _error_line(result: Result) -> str:
    """The one ``Error:`` line of a failed command (usage errors print usage lines above)."""
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert result.output.rstrip("\n").endswith(lines[0]), result.output  # nothing after it
    return lines[0]


def test_a_missing_scene_file_is_a_usage_error(tiny_video: Path, tmp_path: Path) -> None:
    result = _run("--source", str(tiny_video), "--scene", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert _error_line(result) == (
        f"Error: Invalid value for '--scene': File '{tmp_path / 'nope.yaml'}' does not exist."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "frame: {width: 640, height: 360}\nlines:\n  bad:\n"
            "    points: [[0, 0], [1, 1], [1, 0], [0, 1]]\n",
            "lines.bad.points: the line crosses or retraces itself (sides would be ambiguous)",
        ),
        (
            "frame: {width: 640, height: 360}\nlines:\n  far: {points: [[0, 0.5], [1.5, 0.5]]}\n",
            "lines.far.points.1.0: Input should be less than or equal to 1",
        ),
        ("lines: {}\n", "frame: Field required"),
        (
            "frame: {width: 640\n",
            "cannot be parsed: expected ',' or '}', but got '<stream end>' at line 2, column 1",
        ),
        ("frame: {width: 640, height: 360}\nlines: {}\nlines: {}\n", "duplicate key 'lines'"),
        ("- just\n- a list\n", "must hold a mapping at the top level"),
    ],
)
def test_a_bad_scene_is_one_precise_error_line(
    tiny_video: Path, tmp_path: Path, text: str, message: str
) -> None:
    scene = tmp_path / "scene.yaml"
    scene.write_text(text)
    result = _run("--source", str(tiny_video), "--scene", str(scene))
    assert result.exit_code == 1, result.output
    line = _error_line(result)
    assert str(scene) in line
    assert message in line


def test_a_missing_video_is_one_error_line(tmp_path: Path) -> None:
    result = _run("--source", str(tmp_path / "nope.mp4"), "--scene", str(SCENE))
    assert result.exit_code == 1
    assert _error_line(result).startswith(f"Error: source {tmp_path / 'nope.mp4'} does not exist")


def test_a_missing_detector_is_one_error_line(tiny_video: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    result = _run("--source", str(tiny_video), "--detector", str(missing), "--scene", str(SCENE))
    assert result.exit_code == 1
    assert _error_line(result).startswith(f"Error: detector model not found: {missing}.")


def test_an_existing_messages_file_is_not_overwritten(tiny_video: Path, tmp_path: Path) -> None:
    kept = tmp_path / "m.semcom"
    kept.write_bytes(b"someone's recording")
    result = _run("--source", str(tiny_video), "--scene", str(SCENE), "--messages", str(kept))
    assert result.exit_code == 2
    assert "exists: give a new file" in _error_line(result)
    assert kept.read_bytes() == b"someone's recording"


@pytest.mark.realdata
def test_ten_seconds_of_the_real_clip(shared_data: Path, tmp_path: Path) -> None:
    """35-45 s of cars_kraten.mp4: traffic on both carriageways (the left one, towards the
    camera, is empty before ~35 s), so both directions of the scene's line are crossed."""
    messages = tmp_path / "clip.semcom"
    result = _run(
        "--source",
        str(shared_data / "videos" / "cars_kraten.mp4"),
        "--detector",
        str(shared_data / "weights" / "yolo11n_int8_coco_320.onnx"),
        "--imgsz",
        "320",
        "--scene",
        str(SCENE),
        "--start",
        "35",
        "--seconds",
        "10",
        "--messages",
        str(messages),
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= {"source", "scene", "edge", "tracks", "lines", "zones", "speeds"}
    assert {"incidents", "crossings", "notes"} <= set(report)
    edge = report["edge"]
    assert edge["frames"] == 250
    assert (edge["imgsz"], edge["tracker"], edge["start_s"]) == (320, "bytetrack", 35.0)
    # the default policy is track-level: summaries with simplified paths, no per-frame boxes
    assert edge["messages"]["TrackSummary"] > 0
    assert "Detections" not in edge["messages"]
    assert edge["boxes_every_frames"] == 0
    assert messages.stat().st_size > 0
    assert report["notes"] == []  # the scene's aspect is the video's

    line = report["lines"]["across_road"]
    assert line["in"] > 0
    assert line["out"] > 0
    assert sum(c["in"] + c["out"] for c in line["by_class"].values()) == line["in"] + line["out"]
    assert set(line["by_class"]) <= set(COCO_NAMES)
    assert "car" in line["by_class"]
    assert len(report["crossings"]) == line["in"] + line["out"]
    for crossing in report["crossings"]:
        assert 35.0 <= crossing["t_s"] <= 45.1
        assert crossing["direction"] in ("in", "out")
        assert crossing["class"] in COCO_NAMES

    assert report["tracks"]["total"] > 0
    assert set(report["tracks"]["by_class"]) <= set(COCO_NAMES)
    assert report["speeds"]["unit"] == "image_widths/s"
    assert report["speeds"]["all"]["n"] > 0
    zone = report["zones"]["bus_stop"]
    assert zone["entries"] >= zone["exits"]
