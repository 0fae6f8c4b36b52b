"""Edge authentication and the cloud's configuration."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud.auth import AuthFailure, authenticate
from cloud.cli import cloud as cloud_cli
from cloud.config import ConfigError, load_config, with_tokens

DIGESTS = {"edge-01": hashlib.sha256(b"tok").digest()}


@pytest.mark.parametrize(
    ("edge", "header", "status", "reason"),
    [
        ("edge-01", None, 401, "missing"),
        ("edge-01", "Basic dG9r", 401, "malformed"),
        ("edge-01", "Bearer ", 401, "malformed"),
        ("edge-01", "Bearer wrong", 403, "rejected"),
        ("edge-02", "Bearer tok", 403, "rejected"),  # right token, unknown edge
    ],
)
def test_authentication_failures_are_typed(
    edge: str, header: str | None, status: int, reason: str
) -> None:
    with pytest.raises(AuthFailure) as info:
        authenticate(DIGESTS, edge, header)
    assert (info.value.status, info.value.reason) == (status, reason)


def test_the_right_token_passes() -> None:
    authenticate(DIGESTS, "edge-01", "Bearer tok")
    authenticate(DIGESTS, "edge-01", "bearer  tok ")


def test_config_layers_and_token_hashes(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"abc").hexdigest()
    path = tmp_path / "cloud.yaml"
    path.write_text(f"port: 9000\nedges:\n  cam-a:\n    token_sha256: {digest}\n")
    config = load_config(path, {"port": 9100}, environ={"SEMCOM_CLOUD__HOST": "0.0.0.0"})
    assert (config.host, config.port) == ("0.0.0.0", 9100)
    assert config.edges["cam-a"].digest() == hashlib.sha256(b"abc").digest()
    config = with_tokens(config, {"cam-b": "xyz"})
    assert set(config.edges) == {"cam-a", "cam-b"}
    assert "xyz" not in repr(config)  # tokens never printed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port: -1\n", "port"),
        ("edges:\n  a:\n    token: x\n    token_sha256: " + "a" * 64 + "\n", "exactly one"),
        ("edges:\n  'bad id':\n    token: x\n", "invalid edge ids"),
        ("colour: blue\n", "colour"),
        ("- a list\n", "mapping"),
    ],
)
def test_invalid_config_is_one_precise_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cloud.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_token_command_prints_a_hash_and_the_edge_setting() -> None:
    result = CliRunner().invoke(cloud_cli, ["token", "cam-7"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    token = lines[-1].split("=", 1)[1]
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert f"token_sha256: {digest}" in result.output
    assert "cam-7:" in result.output


def test_the_deploy_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "cloud.example.yaml"
    config = load_config(example)
    assert config.retention == "30d"
    assert set(config.api_tokens) == {"dashboard"}
    assert config.database == "sqlite:////var/lib/semcom/catalog.db"
