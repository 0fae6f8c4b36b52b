"""The encoder's ONNX export is kept between starts, keyed by everything that shapes it; a
corrupt entry is rebuilt; the quantiser's INFO lines stay out of the logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edge.embed
from edge.config import TimmEncoderConfig
from edge.embed import OnnxEncoder, build_encoder
from edge.onnx_cache import cache_dir, cache_key

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each real export (a spy on the export step: it still runs)."""
    done: list[Path] = []
    real = edge.embed._export

    def spy(encoder: Any, path: Path, runtime: str) -> None:
        done.append(path)
        real(encoder, path, runtime)

    monkeypatch.setattr(edge.embed, "_export", spy)
    return done


def _config(folder: Path, **kw: Any) -> TimmEncoderConfig:
    base: dict[str, Any] = {"name": "test_vit", "random_init": True, "runtime": "onnx"}
    return TimmEncoderConfig(**{**base, **kw, "onnx_cache_dir": folder})


def _crops(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 160, 160, 3), dtype=np.uint8)


def test_a_second_start_opens_the_cached_export(
    tmp_path: Path, exports: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.embed")
    first = build_encoder(_config(tmp_path))
    assert isinstance(first, OnnxEncoder)
    assert len(exports) == 1
    (entry,) = tmp_path.glob("*.onnx")
    assert entry.name.startswith("test_vit-onnx-")
    stamp = entry.stat().st_mtime_ns
    assert "exported to ONNX (onnx)" in caplog.text
    caplog.clear()

    second = build_encoder(_config(tmp_path))
    assert isinstance(second, OnnxEncoder)
    assert len(exports) == 1  # no second export
    assert entry.stat().st_mtime_ns == stamp
    assert f"ONNX (onnx) from cache {entry}" in caplog.text
    assert "RANDOM weights" in caplog.text  # said on a cache hit too
    np.testing.assert_array_equal(second.embed(_crops()), first.embed(_crops()))


def test_the_key_covers_what_shapes_the_export(tmp_path: Path) -> None:
    base = _config(tmp_path)
    keys = {
        cache_key(base, "onnx"),
        cache_key(base, "onnx-int8"),
        cache_key(_config(tmp_path, model_kwargs={"drop_rate": 0.1}), "onnx"),
        cache_key(_config(tmp_path, preprocess={"size": 128}), "onnx"),
        cache_key(_config(tmp_path, name="vit_tiny_patch16_224"), "onnx"),
    }
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"one")
    keys.add(cache_key(_config(tmp_path, random_init=False, weights=weights), "onnx"))
    weights.write_bytes(b"two")  # the same path with other bytes: another entry
    keys.add(cache_key(_config(tmp_path, random_init=False, weights=weights), "onnx"))
    assert len(keys) == 7
    assert cache_key(base, "onnx") == cache_key(_config(tmp_path), "onnx")


def test_a_corrupt_entry_is_rebuilt(
    tmp_path: Path, exports: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    build_encoder(_config(tmp_path))
    (entry,) = tmp_path.glob("*.onnx")
    entry.write_bytes(entry.read_bytes()[:1000])  # cut short, as by a full disk
    encoder = build_encoder(_config(tmp_path))
    assert len(exports) == 2
    assert "unusable" in caplog.text
    assert encoder.embed(_crops()).shape == (2, 64)
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]  # no temporary files left


def test_int8_export_is_cached_without_the_quantiser_info_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    encoder = build_encoder(_config(tmp_path, runtime="onnx-int8"))
    assert encoder.runtime == "onnx-int8"
    chatty = [
        r for r in caplog.records if "quantization" in r.pathname and r.levelno < logging.WARNING
    ]
    assert chatty == []
    assert len(list(tmp_path.glob("test_vit-onnx-int8-*.onnx"))) == 1


def test_the_default_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEMCOM_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "onnx"
    assert cache_dir(tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("SEMCOM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "semcom" / "onnx"


def test_auto_quantises_transformers_and_keeps_cnns_in_fp32(tmp_path: Path) -> None:
    """auto on a CPU: int8 when most weights feed MatMul/Gemm (a ViT), fp32 for a CNN, whose
    convolutions int8 would slow down and move away from the cloud's fp32 vectors."""
    from edge.onnx_cache import quantizable_share

    vit = build_encoder(_config(tmp_path, runtime="auto"))
    cnn = build_encoder(_config(tmp_path, name="mobilenetv2_100", runtime="auto"))
    assert (vit.runtime, cnn.runtime) == ("onnx-int8", "onnx")
    build_encoder(_config(tmp_path, runtime="onnx"))
    (vit_fp32,) = tmp_path.glob("test_vit-onnx-*.onnx")
    (cnn_fp32,) = tmp_path.glob("mobilenetv2_100-auto-*.onnx")
    assert quantizable_share(vit_fp32) > 0.75  # a 64-d test ViT; vit_tiny: 0.97
    assert quantizable_share(cnn_fp32) == 0.0
    torch_cnn = build_encoder(_config(tmp_path, name="mobilenetv2_100", runtime="torch"))
    crops = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(cnn.embed(crops), torch_cnn.embed(crops), atol=1e-4)
