"""Configuration errors surface when the config is validated, and name where the bad value
came from: the file, the environment variable or the command line (issue 14, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud.config import ConfigError as CloudConfigError
from cloud.config import load_config as load_cloud_config
from edge.config import load_config
from edge.errors import ConfigError
from semcom.cli import cli

BAD_LADDER = (
    "source: {uri: a.mp4}\n"
    "uplink: {cloud: 'http://cloud.example:8443', token: t, ladder: [f16, int4]}\n"
)
LADDER_ERROR = (
    "Error: invalid edge configuration: uplink.ladder.1: Value error, unknown embedding codec "
    "'int4' (built-in: f32, f16, int8; or a codebook .npz path)"
)


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_show_config_refuses_a_ladder_that_run_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(BAD_LADDER)
    code, output = _invoke("edge", "show-config", "-c", str(path))
    assert code != 0
    lines = output.strip().splitlines()
    assert lines == [f"{LADDER_ERROR} (in {path})"]  # one precise message, naming the file
    # `edge run` validates the same way, before it loads any model
    code, run_output = _invoke("edge", "run", "-c", str(path), "--max-frames", "1")
    assert code != 0
    assert run_output == output


def test_the_codec_and_codebook_paths_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"codec: Value error, unknown embedding codec 'f15'"):
        load_config(None, {"source.uri": "a.mp4", "codec": "f15"}, environ={})
    with pytest.raises(ConfigError, match=r"codec: Value error, codebook .*pq\.npz does not exist"):
        load_config(None, {"source.uri": "a.mp4", "codec": str(tmp_path / "pq.npz")}, environ={})


def test_a_bad_environment_variable_is_named_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("source: {uri: a.mp4}\ndetector: {imgsz: 320}\n")
    code, output = _invoke(
        "edge", "show-config", "-c", str(path), env={"SEMCOM_EDGE__DETECTOR__IMGSZ": "abc"}
    )
    assert code != 0
    assert "detector.imgsz: Input should be a valid integer" in output
    assert "(from environment variable SEMCOM_EDGE__DETECTOR__IMGSZ)" in output
    assert str(path) not in output  # the file said 320: it is not to blame


def test_each_error_names_its_own_layer(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("source: {uri: a.mp4}\ndetector: {conf: 7}\nencoder: {threads: 0}\n")
    env = {"SEMCOM_EDGE__POLICY__CONFIRM_FRAMES": "zero"}
    with pytest.raises(ConfigError) as info:
        load_config(path, {"crop.scale": -1}, environ=env)
    text = str(info.value)
    assert f"detector.conf: Input should be less than or equal to 1 (in {path})" in text
    assert f"encoder.timm.threads: Input should be greater than or equal to 1 (in {path})" in text
    assert "(from environment variable SEMCOM_EDGE__POLICY__CONFIRM_FRAMES)" in text
    assert "crop.scale: Input should be greater than 0 (from the command line)" in text


def test_the_cloud_names_a_bad_environment_variable_too(tmp_path: Path) -> None:
    path = tmp_path / "cloud.yaml"
    path.write_text("port: 9000\n")
    with pytest.raises(CloudConfigError) as info:
        load_cloud_config(path, environ={"SEMCOM_CLOUD__PORT": "abc"})
    text = str(info.value)
    assert "port: Input should be a valid integer" in text
    assert "(from environment variable SEMCOM_CLOUD__PORT)" in text
    assert str(path) not in text
