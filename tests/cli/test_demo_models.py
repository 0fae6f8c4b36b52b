"""The demo's models: --pull-models pulls through `semcom models pull`, keeps what is already
provisioned, and without a network falls back to untrained models, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest

from semcom.demo_models import (
    DEFAULT_ENCODER,
    PULLED_DETECTOR,
    PULLED_ENCODER,
    UNTRAINED_DETECTOR,
    pulled_models,
)
from shared.models import ModelStore


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEMCOM_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def test_offline_the_demo_runs_untrained_models_and_says_so(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The libraries' documented settings, pointed at a closed local port: a real failed pull.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    detector, encoder, untrained = pulled_models(PULLED_DETECTOR, PULLED_ENCODER, None)
    assert (detector, encoder, untrained) == (UNTRAINED_DETECTOR, DEFAULT_ENCODER, True)
    err = capsys.readouterr().err
    assert "cannot pull yolo11n" in err
    assert "UNTRAINED" in err
    assert "semcom models pull yolo11n mobilenetv2" in err


def test_provisioned_models_are_used_without_a_download(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files already in the models directory (here imported: the manifest has no hash for these
    two, so any file stands in) are kept; nothing goes to the network."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # any download would fail
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    store = ModelStore()
    for name in (PULLED_DETECTOR, PULLED_ENCODER):
        src = tmp_path / f"{name}.bin"
        src.write_bytes(name.encode() * 100)
        store.import_file(src, name)
    assert pulled_models(PULLED_DETECTOR, PULLED_ENCODER, None) == (
        PULLED_DETECTOR,
        PULLED_ENCODER,
        False,
    )


def test_a_users_weights_file_is_not_pulled(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    store = ModelStore()
    src = tmp_path / "det.bin"
    src.write_bytes(b"x" * 100)
    store.import_file(src, PULLED_DETECTOR)
    weights = tmp_path / "mine.safetensors"
    assert pulled_models(PULLED_DETECTOR, PULLED_ENCODER, weights) == (
        PULLED_DETECTOR,
        PULLED_ENCODER,
        False,
    )
