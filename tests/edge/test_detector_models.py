"""The edge detector takes manifest names (`--detector yolo11n`) as well as paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import DetectorConfig
from edge.detect import resolve_detector, resolve_model
from edge.errors import ModelNotFound, ModelRejected
from shared.models import ModelStore

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    monkeypatch.setenv("SEMCOM_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))  # an empty cache
    monkeypatch.chdir(tmp_path)
    return ModelStore()


def test_a_name_resolves_to_its_provisioned_file(store: ModelStore, tmp_path: Path) -> None:
    weights = tmp_path / "export.pt"
    weights.write_bytes(b"stand-in weights")
    store.import_file(weights, "yolo11s")
    stored = store.root / "ultralytics--assets" / "yolo11s.pt"
    resolved = resolve_detector("yolo11s")
    assert resolved.path == stored
    assert resolved.entry is not None
    assert resolved.entry.name == "yolo11s"
    assert resolve_model("yolo11s.pt") == stored  # the bare file name finds it too
    assert resolve_model(str(weights)) == weights  # a path is used as is
    assert resolve_detector("yolo11n.yaml").path == Path("yolo11n.yaml")  # untrained architecture


def test_name_errors_say_what_to_run(store: ModelStore) -> None:
    with pytest.raises(ModelNotFound, match="run `semcom models pull yolo11m`"):
        resolve_model("yolo11m")
    with pytest.raises(ModelNotFound, match="semcom models import FILE --as yolo11n-int8-320"):
        resolve_model("yolo11n-int8-320")
    with pytest.raises(ModelNotFound, match="run `semcom models pull yolo11n`"):
        resolve_model("yolo11n.pt")  # the old default, now with the way to get it
    with pytest.raises(ModelRejected, match="is of kind encoder, not detector"):
        resolve_model("vit-s16")
    with pytest.raises(ModelNotFound, match="or a detector name of `semcom models list`"):
        resolve_model("yolo12n")


def test_a_tampered_detector_is_rejected(store: ModelStore, tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x" * 100)
    store.import_file(weights, "yolo11n")
    (store.root / "ultralytics--assets" / "yolo11n.pt").write_bytes(b"y" * 100)
    with pytest.raises(ModelRejected, match="hash mismatch for model 'yolo11n'"):
        resolve_model("yolo11n")


@pytest.mark.realdata
def test_the_int8_detector_by_name_runs_at_its_own_size(
    store: ModelStore, shared_data: Path, tmp_path: Path
) -> None:
    import cv2

    from edge.detect import Detector

    store.import_file(shared_data / "weights" / "yolo11n_int8_coco_320.onnx", "yolo11n-int8-320")
    detector = Detector(DetectorConfig(model="yolo11n-int8-320", settings_dir=tmp_path / "yolo"))
    assert detector.imgsz == 320  # from the manifest: the export's input is a fixed 320x320
    assert not detector.random_init
    image = cv2.imread(str(shared_data / "images" / "bus.jpg"))
    boxes = detector.track(image)
    names = {detector.class_names[int(c)] for c in boxes.class_ids}
    assert {"person", "bus"} <= names
    assert float(np.max(boxes.confidences)) > 0.5
