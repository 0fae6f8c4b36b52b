"""Edge configuration: one validated object built from a YAML file, environment and flags.

Precedence (last wins): defaults < YAML file < ``SEMCOM_EDGE__SECTION__FIELD`` environment
variables < command-line flags. Unknown keys are errors. Pluggable backends pick their
implementation with a ``type`` field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.errors import ConfigError
from shared.messages import ID_PATTERN

ENV_PREFIX = "SEMCOM_EDGE__"
#: COCO ids of road users: person, bicycle, car, motorcycle, bus, truck.
ROAD_USERS = (0, 1, 2, 3, 5, 7)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    uri: str = Field(
        description="Video file (mp4/avi/mkv), image folder, rtsp:// or http(s):// stream, or a "
        "USB camera index such as '0'."
    )
    camera_id: str = Field(
        "cam-01",
        pattern=f"^{ID_PATTERN}$",
        max_length=64,
        description="Camera id sent with every message.",
    )
    fps: float | None = Field(
        None, gt=0, le=240, description="Sample frames at this rate (default: every frame)."
    )
    loop: bool = Field(False, description="Restart a video file or image folder at its end.")
    pace: bool = Field(
        True,
        description="Deliver file frames at the file's own rate, like a "
        "live camera (off: as fast as the pipeline takes them).",
    )
    reconnect_initial_s: float = Field(1.0, gt=0, description="First reconnect delay (s).")
    reconnect_max_s: float = Field(30.0, gt=0, description="Largest reconnect delay (s).")


class DetectorConfig(_Model):
    model: str = Field(
        "yolo11n.pt",
        description="Ultralytics model: .pt, .onnx, .engine or "
        ".yaml (a .yaml builds an untrained model: development only).",
    )
    imgsz: int = Field(640, ge=32, le=4096, description="Inference size (px).")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Confidence threshold.")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU threshold.")
    classes: tuple[int, ...] = Field(ROAD_USERS, description="Class ids kept (COCO ids).")
    tracker: Literal["bytetrack", "botsort"] = Field(
        "bytetrack", description="Ultralytics tracker."
    )
    device: str | None = Field(None, description="'cpu', '0' (GPU 0), ... (default: automatic).")
    ort_spinning: bool = Field(
        False,
        description="Let ONNX Runtime worker threads spin-wait between operators. Off leaves the "
        "CPU to the decoding and embedding threads: on 2 cores it raised pipeline fps by about "
        "half in our measurements (ONNX models only).",
    )
    ort_threads: int | None = Field(
        None, ge=1, le=64, description="ONNX Runtime threads for the detector (default: all cores)."
    )
    settings_dir: Path | None = Field(
        None,
        description="Writable folder for ultralytics "
        "settings (default: ~/.cache/semcom/ultralytics).",
    )


class TimmEncoderConfig(_Model):
    type: Literal["timm"] = "timm"
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto",
        description="Run the model in PyTorch, or export it at start-up and run it in ONNX "
        "Runtime (onnx-int8: dynamic int8 weights, about 2x faster on CPU). auto: onnx-int8 "
        "on a CPU device (falling back to torch if the export fails), torch on a GPU.",
    )
    name: str = Field(
        "vit_base_patch16_224",
        description="timm model name (768-d ViT-B as in "
        "the paper; vit_small_patch16_224 (384-d) is the light edge choice).",
    )
    weights: Path | None = Field(
        None,
        description="Local weights (.safetensors/.pth/.bin); "
        "default: the Hugging Face cache, offline.",
    )
    random_init: bool = Field(
        False,
        description="Untrained weights: development and benchmarks "
        "only; everything produced says so.",
    )
    threads: int = Field(1, ge=1, le=64, description="CPU threads for the encoder.")
    batch_size: int = Field(8, ge=1, le=256, description="Crops embedded per call.")
    device: str = Field("cpu", description="torch device: 'cpu', 'cuda', 'cuda:1', ...")


class OnnxEncoderConfig(_Model):
    type: Literal["onnx"] = "onnx"
    path: Path = Field(description="Encoder exported by `semcom edge export-encoder`.")
    threads: int = Field(1, ge=1, le=64, description="CPU threads for ONNX Runtime.")
    batch_size: int = Field(8, ge=1, le=256, description="Crops embedded per call.")
    providers: tuple[str, ...] = Field(
        ("CPUExecutionProvider",),
        description="ONNX Runtime execution providers, in order of preference.",
    )


EncoderConfig = Annotated[TimmEncoderConfig | OnnxEncoderConfig, Field(discriminator="type")]


class CropConfig(_Model):
    scale: float = Field(
        2.5, gt=0, le=10, description="Box scale S of the square RoI crop (paper: 2.5)."
    )


class PolicyConfig(_Model):
    confirm_frames: int = Field(
        3, ge=1, description="Frames a track must be seen before its first embedding is sent."
    )
    drift_threshold: float = Field(
        0.15,
        gt=0,
        le=2,
        description="Cosine distance from the last sent embedding that counts as appearance drift.",
    )
    check_interval_s: float = Field(
        5.0, gt=0, description="Re-embed a track to check for drift at most this often (s)."
    )
    recheck_scale: float = Field(
        1.5,
        gt=1,
        description="Re-check sooner when the box side "
        "grew or shrank by this factor since the last embedding.",
    )
    keyframe_interval_s: float = Field(
        10.0,
        gt=0,
        description="Send an embedding at least this often per track, drifted or not (s).",
    )
    lost_frames: int = Field(30, ge=1, description="Frames unseen before a track is ended.")
    path_points: int = Field(32, ge=2, le=256, description="Boxes kept in a TrackEnd path.")
    counts_every_frames: int = Field(
        1, ge=0, description="Send FrameCounts every N frames (0: never)."
    )
    counts_on_change: bool = Field(True, description="Skip FrameCounts equal to the last sent.")
    detections_every_frames: int = Field(
        5, ge=0, description="Send all boxes every N frames (0: never)."
    )
    max_pending_embeddings: int = Field(
        32,
        ge=1,
        description="Crops waiting for the encoder; over this, drift checks are skipped (counted).",
    )


class FileSinkConfig(_Model):
    type: Literal["file"] = "file"
    path: Path = Field(description="Message file to append to (replayable by cloud and sim).")


SinkConfig = Annotated[FileSinkConfig, Field(discriminator="type")]


class EdgeConfig(_Model):
    edge_id: str = Field(
        "edge-01",
        pattern=f"^{ID_PATTERN}$",
        max_length=64,
        description="This agent's id, unique per deployment.",
    )
    source: SourceConfig
    detector: DetectorConfig = DetectorConfig()
    encoder: EncoderConfig = TimmEncoderConfig()
    crop: CropConfig = CropConfig()
    policy: PolicyConfig = PolicyConfig()
    codec: str = Field(
        "f16",
        description="Embedding codec: f32, f16, int8, or a codebook .npz "
        "fitted with `semcom codec fit`.",
    )
    sink: SinkConfig | None = None
    status_interval_s: float = Field(1.0, gt=0, description="Live status refresh period (s).")


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``SEMCOM_EDGE__DETECTOR__IMGSZ=320`` -> ``{"detector": {"imgsz": 320}}`` (YAML-typed)."""
    dotted = {
        k[len(ENV_PREFIX) :].lower().replace("__", "."): yaml.safe_load(v)
        for k, v in environ.items()
        if k.startswith(ENV_PREFIX)
    }
    return _nest(dotted)


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> EdgeConfig:
    """Build the config; ``overrides`` uses dotted keys (``{"detector.imgsz": 320}``)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded or {}
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    data = _merge(data, _nest({k: v for k, v in (overrides or {}).items() if v is not None}))
    for section, default_type in (("encoder", "timm"), ("sink", "file")):
        if isinstance(data.get(section), dict):
            data[section] = {"type": default_type, **data[section]}
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid edge configuration{where}: {problems}") from None
