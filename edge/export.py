"""Model exports for deployment: the detector through ultralytics' own exporter (a TensorRT
``.engine`` on the Jetson, ``.onnx`` anywhere) and a timm encoder to ONNX with its
preprocessing, for ``semcom edge export`` and ``semcom edge export-encoder``.

The encoder stays an ONNX file on every machine: on the Jetson, ONNX Runtime's TensorRT
provider builds (and caches) its engine at the first start (:mod:`edge.ort_providers`).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edge.config import TimmEncoderConfig
from edge.errors import BackendUnavailable, EdgeError

if TYPE_CHECKING:
    from edge.embed import TimmEncoder

#: the detector files ultralytics can export from (a manifest name resolves to its .pt)
EXPORTABLE = (".pt", ".yaml", ".yml")
#: detector input size when neither the flag nor the manifest gives one
DEFAULT_IMGSZ = 640


@dataclass(frozen=True, slots=True)
class DetectorExport:
    """How to export the detector: format, input size and precision (engine: on GPU 0)."""

    format: Literal["engine", "onnx"] = "engine"
    imgsz: int | None = None
    half: bool = False
    int8: bool = False
    data: Path | None = None  # int8 calibration dataset (ultralytics data YAML)
    workspace: float | None = None  # TensorRT builder workspace (GiB)
    device: str | None = None  # default: "0" for engine, "cpu" for onnx

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.half else "fp32"


@dataclass(frozen=True, slots=True)
class ExportedDetector:
    path: Path
    imgsz: int
    untrained: bool  # exported from a .yaml: boxes are noise


def precision_args(half: bool, int8: bool, *, has_quantize: bool) -> dict[str, Any]:
    """ultralytics' precision arguments: ``quantize`` (8.4 and later) or ``half``/``int8``."""
    if has_quantize:
        return {"quantize": 8 if int8 else 16 if half else None}
    return {"half": half, "int8": int8}


def check_engine_export() -> None:
    """Fail fast, in one line, where a TensorRT engine cannot be built."""
    from edge.accel import ON_THE_JETSON, tensorrt_missing

    missing = tensorrt_missing()
    if missing is not None:
        raise BackendUnavailable(
            f"cannot build a TensorRT engine here: this machine lacks {missing}. "
            f"{ON_THE_JETSON}; run `semcom edge export --format engine` there, or use "
            "--format onnx."
        )


def export_detector(model: str, spec: DetectorExport, out_dir: Path) -> ExportedDetector:
    """Export ``model`` (a manifest name, .pt or .yaml) with ultralytics into ``out_dir`` as
    ``NAME-IMGSZ-PRECISION.engine|.onnx``; ultralytics' intermediate files are not kept."""
    from edge.detect import _offline_settings, resolve_detector

    if spec.format == "engine":
        check_engine_export()
    resolved = resolve_detector(model)
    path, entry = resolved.path, resolved.entry
    if path.suffix.lower() not in EXPORTABLE:
        raise EdgeError(
            f"detector {model}: ultralytics exports from a PyTorch model (a manifest name such as "
            f"yolo11n, a .pt or a .yaml), not a {path.suffix} file"
        )
    own = max(entry.preprocessing.input_size) if entry and entry.preprocessing else None
    imgsz = spec.imgsz or own or DEFAULT_IMGSZ
    untrained = path.suffix.lower() in (".yaml", ".yml")
    stem = (entry.name if entry else path.stem) + ("-untrained" if untrained else "")
    target = out_dir / f"{stem}-{imgsz}-{spec.precision}.{spec.format}"
    out_dir.mkdir(parents=True, exist_ok=True)
    _offline_settings(None)
    import torch
    from ultralytics import YOLO
    from ultralytics.cfg import DEFAULT_CFG_DICT

    yolo = YOLO(str(path))
    kwargs = precision_args(spec.half, spec.int8, has_quantize="quantize" in DEFAULT_CFG_DICT)
    if spec.data is not None:
        kwargs["data"] = str(spec.data)
    if spec.workspace is not None:
        kwargs["workspace"] = spec.workspace
    device = spec.device or ("0" if spec.format == "engine" else "cpu")
    with tempfile.TemporaryDirectory(prefix=".semcom-export-", dir=out_dir) as work:
        # ultralytics writes beside the model's own file: here, a folder of ours
        yolo.model.pt_path = str(Path(work) / f"{stem}.pt")
        try:
            with warnings.catch_warnings():
                # tracing warns about shape checks turned into constants: the input size is
                # fixed by design (as in TimmEncoder.export_onnx)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                produced = yolo.export(format=spec.format, imgsz=imgsz, device=device, **kwargs)
        except Exception as exc:  # ultralytics raises many types; the cause is kept
            first = (str(exc).strip().splitlines() or [""])[0]
            raise EdgeError(
                f"ultralytics could not export {model} to {spec.format} "
                f"({type(exc).__name__}: {first})"
            ) from exc
        os.replace(produced, target)
    return ExportedDetector(target, imgsz, untrained)


def export_encoder_onnx(
    out: Path,
    *,
    name: str,
    weights: Path | None = None,
    random_init: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    preprocess: Mapping[str, Any] | None = None,
    quantize: str = "none",
) -> TimmEncoder:
    """Export a timm encoder (a model name or a manifest encoder name, as the flags give it) to
    ONNX at ``out``, its preprocessing in the file's metadata, int8 weights for
    ``quantize="int8"``; returns the PyTorch encoder it was made from. Invalid options raise
    pydantic's ``ValidationError``; missing weights an :class:`EdgeError`."""
    from edge.embed import TimmEncoder, quantize_onnx

    config = TimmEncoderConfig(
        name=name,
        weights=weights,
        random_init=random_init,
        model_kwargs=dict(model_kwargs or {}),
        preprocess=dict(preprocess or {}),
    )
    encoder = TimmEncoder(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    encoder.export_onnx(out)
    if quantize == "int8":
        quantize_onnx(out, out)
    return encoder


def describe_encoder(encoder: TimmEncoder, out: Path, quantize: str) -> str:
    """``wrote PATH: NAME, DIM-d, input SIZE px, quantize=...`` (random init said)."""
    note = " (RANDOM-INIT weights)" if encoder.random_init else ""
    return (
        f"wrote {out}: {encoder.name}, {encoder.dim}-d, input {encoder.preprocess.size} px, "
        f"quantize={quantize}{note}"
    )


def config_lines(
    detector: ExportedDetector | None,
    encoder: Path | None,
    *,
    engine: bool,
    fp16: bool,
) -> str:
    """The edge config (YAML) that uses the exported files: the detector file and its size;
    the encoder file on TensorRT, CUDA, then the CPU for an engine export (the CPU else)."""
    lines = []
    if detector is not None:
        lines += ["detector:", f"  model: {detector.path}", f"  imgsz: {detector.imgsz}"]
    if encoder is not None:
        lines += ["encoder:", "  type: onnx", f"  path: {encoder}"]
        if engine:
            lines += ["  providers: [tensorrt, cuda, cpu]", f"  fp16: {str(fp16).lower()}"]
        else:
            lines += ["  providers: [cpu]  # [tensorrt, cuda, cpu] with onnxruntime-gpu"]
    return "\n".join(lines)
