"""``semcom edge export``: a TensorRT engine fails fast, in one line, where there is no CUDA or
TensorRT (as here); ``--format onnx`` writes a detector and an encoder that load and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edge.accel
from edge.accel import tensorrt_missing
from edge.export import ExportedDetector, config_lines, precision_args
from semcom.cli import cli

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["edge", "export", *args])
    return result.exit_code, result.output


def test_engine_export_without_tensorrt_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge.accel, "tensorrt_missing", lambda: "TensorRT (stand-in)")
    code, output = _invoke("--format", "engine", "--half", "--out", str(tmp_path))
    assert code == 1
    assert output.strip().splitlines() == [
        "Error: cannot build a TensorRT engine here: this machine lacks TensorRT (stand-in). "
        "TensorRT engines are built and run on the Jetson itself (JetPack 6: CUDA, TensorRT and "
        'NVIDIA\'s PyTorch wheel; deploy/README.md "Jetson acceleration"); run `semcom edge '
        "export --format engine` there, or use --format onnx."
    ]
    assert list(tmp_path.iterdir()) == []  # failed before exporting anything


@pytest.mark.skipif(tensorrt_missing() is None, reason="TensorRT and CUDA are here")
def test_engine_export_names_what_this_machine_lacks(tmp_path: Path) -> None:
    code, output = _invoke("--out", str(tmp_path))  # --format engine is the default
    assert code == 1
    (line,) = output.strip().splitlines()
    assert f"this machine lacks {tensorrt_missing()}" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--half", "--int8"], "give --half or --int8, not both"),
        (["--int8"], "--int8 is for --format engine, with --data DATASET.yaml"),
        (["--format", "onnx", "--int8"], "--int8 is for --format engine"),
    ],
)
def test_bad_precision_flags(args: list[str], message: str) -> None:
    code, output = _invoke(*args)
    assert code == 2
    assert message in output


def test_precision_arguments_of_either_ultralytics() -> None:
    assert precision_args(True, False, has_quantize=True) == {"quantize": 16}
    assert precision_args(False, True, has_quantize=True) == {"quantize": 8}
    assert precision_args(False, False, has_quantize=True) == {"quantize": None}
    assert precision_args(True, False, has_quantize=False) == {"half": True, "int8": False}


def test_config_lines_of_an_engine_export() -> None:
    detector = ExportedDetector(Path("/m/yolo11n-640-fp16.engine"), 640, untrained=False)
    assert config_lines(detector, Path("/m/vit.onnx"), engine=True, fp16=True).splitlines() == [
        "detector:",
        "  model: /m/yolo11n-640-fp16.engine",
        "  imgsz: 640",
        "encoder:",
        "  type: onnx",
        "  path: /m/vit.onnx",
        "  providers: [tensorrt, cuda, cpu]",
        "  fp16: true",
    ]
    assert config_lines(None, Path("/m/vit.onnx"), engine=False, fp16=False).splitlines()[-1] == (
        "  providers: [cpu]  # [tensorrt, cuda, cpu] with onnxruntime-gpu"
    )


def test_onnx_export_writes_files_that_load(tmp_path: Path) -> None:
    import yaml

    from edge.config import DetectorConfig, OnnxEncoderConfig
    from edge.detect import Detector
    from edge.embed import OnnxEncoder

    out = tmp_path / "models"
    code, output = _invoke(
        "--format", "onnx", "--detector", "yolo11n.yaml", "--imgsz", "160",
        "--encoder", "test_vit", "--random-init-encoder", "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    detector_file = out / "yolo11n-untrained-160-fp32.onnx"
    encoder_file = out / "test_vit-random-init.onnx"
    assert sorted(p.name for p in out.iterdir()) == sorted([detector_file.name, encoder_file.name])
    assert "(UNTRAINED: boxes are noise)" in output
    assert "(RANDOM-INIT weights)" in output
    config = yaml.safe_load(output.split("edge config (e.g. /etc/semcom/edge.yaml):\n")[1])
    assert config == {
        "detector": {"model": str(detector_file), "imgsz": 160},
        "encoder": {"type": "onnx", "path": str(encoder_file), "providers": ["cpu"]},
    }

    encoder = OnnxEncoder(OnnxEncoderConfig.model_validate(config["encoder"]))
    assert (encoder.name, encoder.dim, encoder.random_init) == ("test_vit", 64, True)
    assert encoder.embed(np.zeros((2, 160, 160, 3), np.uint8)).shape == (2, 64)
    detector = Detector(DetectorConfig(**config["detector"], settings_dir=tmp_path / "yolo"))
    assert detector.track(np.zeros((160, 160, 3), np.uint8)).xyxy.shape[1:] == (4,)


def test_an_engine_detector_without_tensorrt_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.config import DetectorConfig
    from edge.detect import Detector
    from edge.errors import BackendUnavailable

    monkeypatch.setattr(edge.accel, "tensorrt_missing", lambda: "TensorRT (stand-in)")
    engine = tmp_path / "yolo11n-640-fp16.engine"
    engine.write_bytes(b"not loaded")
    with pytest.raises(BackendUnavailable, match="is a TensorRT engine, but this machine lacks"):
        Detector(DetectorConfig(model=str(engine), settings_dir=tmp_path / "yolo"))
