"""The encoder's ONNX Runtime execution providers: names in the config, their ONNX Runtime ids
and options, what this build has, and the one warning of a fallback to the CPU (this machine
runs the CPU-only onnxruntime wheel: TensorRT and CUDA themselves run only on a Jetson/GPU)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge.config import OnnxEncoderConfig, TimmEncoderConfig, load_config
from edge.errors import ConfigError
from edge.ort_providers import (
    Selection,
    engine_cache_dir,
    fallback_warning,
    parse_providers,
    provider_options,
    select_providers,
    trt_cache_root,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def _gpu_build() -> bool:
    import onnxruntime as ort

    return bool({TRT, CUDA} & set(ort.get_available_providers()))


cpu_only_build = pytest.mark.skipif(
    _gpu_build(), reason="this onnxruntime build has a GPU provider: no CPU fallback to see"
)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("auto", ("tensorrt", "cuda", "cpu")),
        (["auto"], ("tensorrt", "cuda", "cpu")),
        ("tensorrt, cuda,cpu", ("tensorrt", "cuda", "cpu")),
        (["CUDA", "cpu", "cuda"], ("cuda", "cpu")),
        ([CPU], ("cpu",)),  # ONNX Runtime's own ids, as the config took them before
        ((TRT, "cpu"), ("tensorrt", "cpu")),
    ],
)
def test_provider_names(value: object, names: tuple[str, ...]) -> None:
    assert parse_providers(value) == names


def test_an_unknown_provider_is_a_precise_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"source.uri": "x.mp4", "encoder.providers": ["tensorrt", "coreml"]})
    assert (
        "encoder.timm.providers: Value error, unknown execution provider 'coreml': use "
        "tensorrt, cuda, cpu (in order of preference) or auto (= tensorrt, cuda, cpu)"
    ) in str(info.value)
    with pytest.raises(ValidationError, match="unknown execution provider 'gpu'"):
        OnnxEncoderConfig(path=Path("e.onnx"), providers=["gpu"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="give a list of providers"):
        OnnxEncoderConfig(path=Path("e.onnx"), providers=[])


def test_providers_from_the_environment_and_the_defaults() -> None:
    config = load_config(
        None,
        {"source.uri": "x.mp4"},
        environ={
            "SEMCOM_EDGE__ENCODER__PROVIDERS": "tensorrt,cuda,cpu",
            "SEMCOM_EDGE__ENCODER__FP16": "true",
        },
    )
    assert isinstance(config.encoder, TimmEncoderConfig)
    assert (config.encoder.providers, config.encoder.fp16) == (("tensorrt", "cuda", "cpu"), True)
    default = OnnxEncoderConfig(path=Path("e.onnx"))
    assert (default.providers, default.fp16, default.trt_cache_dir) == (("cpu",), False, None)


def test_gpu_providers_need_onnx_runtime_not_torch() -> None:
    with pytest.raises(ValidationError, match="they need runtime onnx"):
        TimmEncoderConfig(runtime="torch", providers=["cuda"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="device is the torch device"):
        TimmEncoderConfig(device="cuda", providers=["tensorrt"])  # type: ignore[arg-type]
    TimmEncoderConfig(runtime="torch", providers=["cpu"])  # type: ignore[arg-type]


def test_provider_options(tmp_path: Path) -> None:
    assert provider_options("tensorrt", fp16=True, engine_cache=tmp_path) == {
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(tmp_path),
    }
    assert provider_options("tensorrt", fp16=False, engine_cache=None) == {
        "trt_fp16_enable": "False"
    }
    assert provider_options("cuda", fp16=True, engine_cache=tmp_path) == {"device_id": "0"}
    assert provider_options("cpu", fp16=True, engine_cache=tmp_path) == {}
    with pytest.raises(ValueError, match="unknown execution provider"):
        provider_options("rocm", fp16=False, engine_cache=None)


def test_selection_keeps_what_the_build_has(tmp_path: Path) -> None:
    auto = ("tensorrt", "cuda", "cpu")
    jetson = select_providers(auto, [TRT, CUDA, CPU], fp16=True, engine_cache=tmp_path)
    assert jetson.used == auto
    assert [pid for pid, _ in jetson.options] == [TRT, CUDA, CPU]
    assert jetson.options[0][1]["trt_fp16_enable"] == "True"
    assert select_providers(auto, ["AzureExecutionProvider", CPU]).used == ("cpu",)
    assert select_providers(("cuda", "cpu"), [CUDA, CPU]).used == ("cuda", "cpu")
    only_trt = select_providers(("tensorrt",), [CPU])  # nothing left: the CPU
    assert (only_trt.used, only_trt.options) == (("cpu",), ((CPU, {}),))


def test_one_warning_says_what_was_asked_and_what_runs() -> None:
    auto = ("tensorrt", "cuda", "cpu")
    absent = fallback_warning(Selection(auto, ("cpu",), ()), ("cpu",))
    assert absent == (
        "encoder providers [tensorrt, cuda, cpu] asked for: TensorRT and CUDA providers are not "
        "available in this onnxruntime build (install onnxruntime-gpu for JetPack, "
        'deploy/README.md "Jetson acceleration"): running the encoder on the CPU'
    )
    failed = fallback_warning(Selection(auto, auto, ()), ("cuda", "cpu"), fp16=True)
    assert failed is not None
    assert "TensorRT did not start" in failed
    assert failed.endswith("running the encoder on CUDA")
    only_trt = fallback_warning(Selection(("tensorrt",), ("cpu",), ()), ("cpu",))
    assert only_trt is not None
    assert "TensorRT provider is not available" in only_trt
    assert fallback_warning(Selection(auto, auto, ()), auto, fp16=True) is None
    assert fallback_warning(Selection(("cpu",), ("cpu",), ()), ("cpu",)) is None


def test_engine_cache_folder_follows_the_file_and_precision(tmp_path: Path) -> None:
    model = tmp_path / "enc.onnx"
    model.write_bytes(b"one")
    fp16 = engine_cache_dir(tmp_path / "trt", model, fp16=True)
    assert fp16.parent == tmp_path / "trt"
    assert fp16.name.startswith("enc-")
    assert fp16.name.endswith("-fp16")
    assert engine_cache_dir(tmp_path / "trt", model, fp16=False).name.endswith("-fp32")
    os.utime(model, ns=(1, 1))  # a re-export at the same path: another folder
    assert engine_cache_dir(tmp_path / "trt", model, fp16=True) != fp16
    assert trt_cache_root(tmp_path / "mine") == tmp_path / "mine"
    assert trt_cache_root().name == "tensorrt"


@pytest.fixture(scope="module")
def encoder_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init timm encoder, exported by the project's own exporter."""
    from edge.export import export_encoder_onnx

    path = tmp_path_factory.mktemp("encoder") / "test_vit.onnx"
    export_encoder_onnx(path, name="test_vit", random_init=True)
    return path


@cpu_only_build
def test_gpu_providers_fall_back_to_the_cpu_with_one_warning(
    encoder_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edge.embed import OnnxEncoder

    caplog.set_level(logging.INFO)
    encoder = OnnxEncoder(
        OnnxEncoderConfig(path=encoder_onnx, providers="auto", fp16=True)  # type: ignore[arg-type]
    )
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "encoder providers [tensorrt, cuda, cpu] asked for: TensorRT and CUDA providers are not "
        "available in this onnxruntime build (install onnxruntime-gpu for JetPack, "
        'deploy/README.md "Jetson acceleration"): running the encoder on the CPU'
    ]
    assert encoder.providers == ("cpu",)
    assert encoder.execution == "onnxruntime CPU"
    assert encoder._session.get_providers() == [CPU]
    crops = np.random.default_rng(0).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    vectors = encoder.embed(crops)
    assert vectors.shape == (3, 64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert "ONNX Runtime providers [cpu]" in caplog.text


def test_cpu_asked_for_is_no_fallback(encoder_onnx: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edge.embed import OnnxEncoder

    caplog.set_level(logging.WARNING)
    encoder = OnnxEncoder(OnnxEncoderConfig(path=encoder_onnx))
    assert encoder.providers == ("cpu",)
    assert not [r for r in caplog.records if r.name == "edge.ort_providers"]


@cpu_only_build
def test_timm_encoder_with_gpu_providers_exports_fp32_and_falls_back(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from edge.embed import OnnxEncoder, build_encoder, resolve_runtime

    config = TimmEncoderConfig(
        name="test_vit",
        random_init=True,
        providers=["tensorrt", "cuda", "cpu"],  # type: ignore[arg-type]
        onnx_cache_dir=tmp_path,
    )
    assert resolve_runtime(config) == "onnx"  # not int8: TensorRT/CUDA run fp32 files
    assert resolve_runtime(TimmEncoderConfig(name="test_vit", random_init=True)) == "auto"
    caplog.set_level(logging.WARNING, logger="edge.ort_providers")
    encoder = build_encoder(config)
    assert isinstance(encoder, OnnxEncoder)
    assert (encoder.runtime, encoder.providers) == ("onnx", ("cpu",))
    assert len([r for r in caplog.records if r.name == "edge.ort_providers"]) == 1
