"""An ``uplink`` section that only tunes sending (a preset such as deploy/edge.lean.yaml: no
``cloud``) does not stop a run that records to a file, and is still a precise error for a run
that would connect to a cloud."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.config import PolicyConfig, load_config
from edge.errors import ConfigError
from semcom.cli import cli
from shared.codec import decode
from shared.framing import read_frames
from shared.messages import Hello

LEAN = Path(__file__).resolve().parents[2] / "deploy" / "edge.lean.yaml"


def _file_run(out: Path) -> dict[str, object]:
    """The overrides ``edge run --source clip.mp4 --out OUT`` gives."""
    return {"source.uri": "clip.mp4", "sink": {"type": "file", "path": str(out)}}


def test_the_lean_preset_loads_for_a_run_that_records_to_a_file(tmp_path: Path) -> None:
    config = load_config(LEAN, _file_run(tmp_path / "msgs.bin"), environ={})
    assert config.uplink is None  # nothing to connect to: the section's tuning is not used
    assert config.sink is not None
    assert config.sink.path == tmp_path / "msgs.bin"
    assert config.policy.confirm_frames == 8  # the rest of the preset applies
    assert config.policy.path_grid == 512
    assert config.codec == "int8"
    # a token from the environment is not a cloud either
    env = {"SEMCOM_EDGE__UPLINK__TOKEN": "t"}
    assert load_config(LEAN, _file_run(tmp_path / "m.bin"), environ=env).uplink is None


def test_a_tuning_only_section_is_still_checked_on_a_file_run(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("uplink: {bundle_linger_ms: -1, bundle_box_stepp: 4}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, _file_run(tmp_path / "msgs.bin"), environ={})
    text = str(info.value)
    assert text.startswith("invalid edge configuration: ")
    linger = "uplink.bundle_linger_ms: Input should be greater than or equal to 0"
    assert f"{linger} (in {path})" in text
    assert f"uplink.bundle_box_stepp: Extra inputs are not permitted (in {path})" in text
    assert "uplink.cloud" not in text
    assert "uplink.token" not in text


def test_without_a_file_the_missing_cloud_is_a_precise_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(LEAN, {"source.uri": "clip.mp4"}, environ={})
    text = str(info.value)
    assert text.startswith("invalid edge configuration: uplink.cloud: Field required; ")
    assert "uplink.token: Field required" in text
    assert "the uplink section names no cloud" in text
    assert "--cloud URL --token T" in text
    assert "--out FILE" in text


def test_a_cloud_and_a_file_together_are_still_refused(tmp_path: Path) -> None:
    flags = ["--cloud", "https://cloud.example", "--token", "t", "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(
        cli, ["edge", "run", "-c", str(LEAN), "--source", "clip.mp4", *flags], env={}
    )
    assert result.exit_code == 2
    assert "give either a cloud (uplink) or a message file, not both" in result.output


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_edge_run_with_the_lean_preset_records_to_a_file(tiny_video: Path, tmp_path: Path) -> None:
    """``semcom edge run --config deploy/edge.lean.yaml --source X --out msgs.bin`` (with a
    random-init YOLO and the tiny RANDOM-INIT test ViT)."""
    out = tmp_path / "msgs.bin"
    cmd = [sys.executable, "-m", "semcom", "edge", "run", "--config", str(LEAN)]
    cmd += ["--source", str(tiny_video), "--detector", "yolo11n.yaml", "--imgsz", "160"]
    cmd += ["--encoder", "test_vit", "--random-init-encoder", "--out", str(out)]
    cmd += ["--no-status", "--no-pace", "--max-frames", "12"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"-> {out}" in result.stderr
    with open(out, "rb") as fh:
        envs = [decode(f) for f in read_frames(fh)]
    hello = envs[0].message
    assert isinstance(hello, Hello)
    assert hello.codecs[0].codec_id == "int8"  # the preset's codec
    assert PolicyConfig().confirm_frames < 8  # the preset's own (8) is what ran
