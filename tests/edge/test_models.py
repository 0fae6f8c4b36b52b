"""The real ultralytics and timm adapters, with random-initialised models (no weights here)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edge.config import DetectorConfig, OnnxEncoderConfig, TimmEncoderConfig
from edge.detect import Detector, FrameBoxes, resolve_model
from edge.embed import OnnxEncoder, TimmEncoder, quantize_onnx
from edge.errors import EdgeError, ModelNotFound

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)


@pytest.fixture(scope="module")
def encoder() -> TimmEncoder:
    return TimmEncoder(TimmEncoderConfig(name="test_vit", random_init=True, batch_size=3))


def _crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_random_init_yolo_through_the_adapter(tiny_video: Path, tmp_path: Path) -> None:
    import cv2

    detector = Detector(
        DetectorConfig(model="yolo11n.yaml", imgsz=160, conf=0.001, settings_dir=tmp_path / "yolo")
    )
    assert detector.random_init
    assert os.environ["YOLO_OFFLINE"] == "true"
    assert len(detector.class_names) == 80  # COCO head (an untrained .yaml has no names)
    cap = cv2.VideoCapture(str(tiny_video))
    for _ in range(3):
        ok, image = cap.read()
        assert ok
        boxes = detector.track(image)
        assert isinstance(boxes, FrameBoxes)
        n = len(boxes)
        assert boxes.xyxy.shape == (n, 4)
        assert boxes.xyxy.dtype == np.float32
        assert boxes.track_ids.shape == boxes.class_ids.shape == boxes.confidences.shape == (n,)
        assert set(boxes.class_ids.tolist()) <= {0, 1, 2, 3, 5, 7}
        assert (boxes.track_ids >= 0).all()
    detector.reset()


def test_missing_detector_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="Copy the weights file there") as info:
        resolve_model(str(tmp_path / "yolo11n.pt"))
    assert info.value.path.endswith("yolo11n.pt")
    with pytest.raises(ModelNotFound, match="Expected a file ending in"):
        resolve_model("model.tflite")


def test_random_init_vit_embeddings(encoder: TimmEncoder) -> None:
    assert encoder.random_init
    assert encoder.preprocess.size == 160  # from timm's data config, not hard-coded
    assert encoder.preprocess.mean == (0.5, 0.5, 0.5)
    crops = _crops(5, 160)
    a = encoder.embed(crops)
    assert a.shape == (5, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(encoder.embed(crops[2:3]), a[2:3], atol=1e-5)  # batch-independent
    assert encoder.embed(crops[:0]).shape == (0, encoder.dim)


def test_onnx_export_matches_torch_and_quantises(encoder: TimmEncoder, tmp_path: Path) -> None:
    path = tmp_path / "enc.onnx"
    encoder.export_onnx(path)
    onnx_encoder = OnnxEncoder(OnnxEncoderConfig(path=path))
    assert (onnx_encoder.name, onnx_encoder.dim, onnx_encoder.random_init) == ("test_vit", 64, True)
    assert onnx_encoder.preprocess == encoder.preprocess
    crops = _crops(4, 160, seed=1)
    np.testing.assert_allclose(onnx_encoder.embed(crops), encoder.embed(crops), atol=1e-4)
    quantize_onnx(path, tmp_path / "int8.onnx")
    q = OnnxEncoder(OnnxEncoderConfig(path=tmp_path / "int8.onnx"))
    cos = (q.embed(crops) * encoder.embed(crops)).sum(axis=1)
    assert cos.min() > 0.9


def test_weights_from_a_local_file(encoder: TimmEncoder, tmp_path: Path) -> None:
    import torch

    path = tmp_path / "test_vit.pth"
    torch.save(encoder._model.state_dict(), path)
    loaded = TimmEncoder(TimmEncoderConfig(name="test_vit", weights=path))
    assert not loaded.random_init
    crops = _crops(2, 160, seed=2)
    np.testing.assert_allclose(loaded.embed(crops), encoder.embed(crops), atol=1e-5)


def test_missing_encoder_weights_are_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the adapter defaults to offline
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFound, match="--encoder-weights PATH") as info:
        TimmEncoder(TimmEncoderConfig(name="test_vit"))
    assert "encoder weights for test_vit" in str(info.value)
    with pytest.raises(ModelNotFound, match="fix --encoder-weights"):
        TimmEncoder(TimmEncoderConfig(name="test_vit", weights=tmp_path / "none.pth"))
    with pytest.raises(EdgeError, match="unknown timm model 'vit_nonsense'"):
        TimmEncoder(TimmEncoderConfig(name="vit_nonsense", random_init=True))
    with pytest.raises(ModelNotFound, match="semcom edge export-encoder"):
        OnnxEncoder(OnnxEncoderConfig(path=tmp_path / "none.onnx"))


def test_timm_encoder_in_onnx_runtime(encoder: TimmEncoder) -> None:
    from edge.embed import build_encoder

    onnx_encoder = build_encoder(
        TimmEncoderConfig(name="test_vit", random_init=True, runtime="onnx")
    )
    assert isinstance(onnx_encoder, OnnxEncoder)
    assert onnx_encoder.random_init
    assert onnx_encoder.dim == 64
    assert onnx_encoder.embed(_crops(2, 160)).shape == (2, 64)


def test_detector_found_in_the_ultralytics_weights_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "yolo11n.pt").write_bytes(b"stand-in")
    (tmp_path / "settings.json").write_text(json.dumps({"weights_dir": str(weights)}))
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert resolve_model("yolo11n.pt") == weights / "yolo11n.pt"
    with pytest.raises(ModelNotFound):
        resolve_model("yolo11s.pt")


def test_auto_runtime_is_onnx_int8_on_cpu() -> None:
    from edge.embed import build_encoder

    auto = build_encoder(TimmEncoderConfig(name="test_vit", random_init=True))
    assert (auto.runtime, auto.random_init) == ("onnx-int8", True)
    torch_encoder = build_encoder(
        TimmEncoderConfig(name="test_vit", random_init=True, runtime="torch")
    )
    assert isinstance(torch_encoder, TimmEncoder)
    assert torch_encoder.runtime == "torch"
