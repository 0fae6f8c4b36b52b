"""`semcom models`: list --json states, import, verify, path, and pull failing fast offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from semcom.cli import cli

OSNET_SHA = "61b2604171ef9d58d21758626f83b35a253c3d7123976523a6e03068c3c95d7b"


def models(models_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["models", "--models-dir", str(models_dir), *args])


def states(models_dir: Path, *flags: str) -> dict[str, str]:
    result = models(models_dir, "list", "--json", *flags)
    data = json.loads(result.stdout)
    assert data["models_dir"] == str(models_dir)
    return {m["name"]: m["state"] for m in data["models"]}


def test_import_list_verify_path(tmp_path: Path) -> None:
    md = tmp_path / "models"
    assert set(states(md).values()) == {"missing"}
    weights = tmp_path / "yolo11n.pt"
    weights.write_bytes(b"weights" * 500)

    imported = models(md, "import", str(weights), "--as", "yolo11n")
    assert imported.exit_code == 0, imported.output
    assert "yolo11n: imported" in imported.stdout
    assert states(md)["yolo11n"] == "imported"
    assert states(md, "--verify")["yolo11n"] == "hash ok"

    listed = json.loads(models(md, "list", "--json").stdout)["models"]
    entry = next(m for m in listed if m["name"] == "yolo11n")
    assert entry["lock"]["source"] == "imported"
    assert entry["kind"] == "detector"
    assert entry["licence"] == "AGPL-3.0"
    osnet = next(m for m in listed if m["name"] == "osnet_x0_25_msmt17")
    assert osnet["import_only"]
    assert osnet["sha256"] == OSNET_SHA
    assert osnet["dim"] == 512

    path = models(md, "path", "yolo11n")
    assert path.exit_code == 0
    assert Path(path.stdout.strip()).read_bytes() == weights.read_bytes()

    verified = models(md, "verify")
    assert verified.exit_code == 0
    assert "yolo11n: hash ok" in verified.stdout

    stored = Path(path.stdout.strip())
    stored.write_bytes(b"W" + stored.read_bytes()[1:])  # tampered after the import
    assert states(md)["yolo11n"] == "hash mismatch"
    assert models(md, "list").exit_code == 1
    bad = models(md, "verify")
    assert bad.exit_code == 1
    assert "yolo11n: hash mismatch" in bad.stdout
    assert "hash mismatch: yolo11n" in bad.stderr
    assert models(md, "path", "yolo11n").exit_code == 1


def test_failures_exit_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    md = tmp_path / "models"
    wrong = tmp_path / "osnet.onnx"
    wrong.write_bytes(b"not osnet")
    refused = models(md, "import", str(wrong), "--as", "osnet_x0_25_msmt17")
    assert refused.exit_code == 1
    assert OSNET_SHA in refused.stderr
    assert "nothing was imported" in refused.stderr
    missing = models(md, "path", "vit-b16")
    assert missing.exit_code == 1
    assert "run `semcom models pull vit-b16`" in missing.stderr
    import_only = models(md, "pull", "mobilenetv2_100_coral")
    assert import_only.exit_code == 1
    assert "semcom models import FILE --as mobilenetv2_100_coral" in import_only.stderr
    unknown = models(md, "verify", "vit-b99")
    assert unknown.exit_code == 1
    assert "unknown model 'vit-b99'" in unknown.stderr
    assert models(md, "verify", "vit-b16").exit_code == 1  # named but not provisioned


def shell_env() -> dict[str, str]:
    """This process's environment as a user's shell has it: without the HF_HUB_OFFLINE that
    building an encoder earlier in this process set (daemons force it; `models pull` refuses it)."""
    return {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}


@pytest.mark.parametrize(
    ("name", "host", "env"),
    [
        # HF_ENDPOINT (huggingface_hub) and HTTPS_PROXY (urllib, requests) are the libraries'
        # documented settings; both point at a closed local port, so the pull really tries the
        # network and fails, on any machine.
        ("vit-s16", "127.0.0.1", {"HF_ENDPOINT": "http://127.0.0.1:9"}),
        ("yolo11n", "github.com", {"HTTPS_PROXY": "http://127.0.0.1:9"}),
    ],
)
def test_pull_offline_fails_fast_saying_what_to_do(
    tmp_path: Path, name: str, host: str, env: dict[str, str]
) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "semcom", "models", "pull", name],
        capture_output=True,
        text=True,
        env={**shell_env(), "SEMCOM_MODELS_DIR": str(tmp_path / "models"), **env},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 1
    assert elapsed < 10, f"pull took {elapsed:.1f} s to fail"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"cannot reach {host}" in lines[0]
    assert f"`semcom models import FILE --as {name}`" in lines[0]
    assert not (tmp_path / "models" / "models.lock.json").exists()
