"""Detection and tracking through ultralytics (YOLO + ByteTrack / BoT-SORT).

ultralytics objects never leave this module: :meth:`Detector.track` returns plain arrays. The
adapter switches ultralytics to offline behaviour when it is built (no DNS look-ups, no
analytics, no runtime installs, a writable settings folder), not at import.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edge.config import DetectorConfig
from edge.errors import BackendUnavailable, ModelNotFound, ModelRejected
from shared.models import (
    ModelEntry,
    ModelError,
    ModelNotProvisioned,
    ModelStore,
    Resolved,
    UnknownModel,
    is_model_name,
    resolve,
)

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = (".pt", ".onnx", ".engine", ".yaml", ".yml")


def _settings_folder(settings_dir: Path | None) -> Path:
    """``detector.settings_dir``, else ~/.cache/semcom/ultralytics."""
    return settings_dir or Path.home() / ".cache" / "semcom" / "ultralytics"


@dataclass(frozen=True, slots=True)
class FrameBoxes:
    """The kept boxes of one frame, in pixels; ``track_ids`` 0 means not (yet) tracked."""

    xyxy: NDArray[np.float32]  # (n, 4)
    class_ids: NDArray[np.int64]  # (n,)
    confidences: NDArray[np.float32]  # (n,)
    track_ids: NDArray[np.int64]  # (n,)

    def __len__(self) -> int:
        return len(self.class_ids)

    @classmethod
    def empty(cls) -> FrameBoxes:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
        )


class TrackingDetector(Protocol):
    """What the pipeline needs from a detector: boxes with track ids, frame after frame."""

    name: str

    def track(self, image: NDArray[np.uint8]) -> FrameBoxes: ...

    def reset(self) -> None: ...


def _offline_settings(settings_dir: Path | None) -> None:
    """Make ultralytics work offline: called before it is first imported."""
    folder = _settings_folder(settings_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(folder))
    os.environ.setdefault("YOLO_OFFLINE", "true")  # no connectivity checks, no downloads
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never pip-install at run time
    os.environ.setdefault("YOLO_VERBOSE", "false")  # its logger prints to stdout


def _ultralytics_weights_dir() -> Path:
    """Where ultralytics keeps downloaded weights (read from its settings file, no import)."""
    settings = Path(os.environ.get("YOLO_CONFIG_DIR", Path.home() / ".config" / "Ultralytics"))
    try:
        import json

        data = json.loads((settings / "settings.json").read_text())
        return Path(data.get("weights_dir", settings / "weights"))
    except (OSError, ValueError):
        return settings / "weights"


def tracker_file(config: DetectorConfig) -> Path:
    """The ultralytics tracker YAML of ``config``: its built-in ``bytetrack.yaml`` or
    ``botsort.yaml`` with ``config.tracking``'s settings, written once into the settings folder
    (named by its content's hash, so concurrent edges share it safely)."""
    import hashlib

    import yaml

    _offline_settings(config.settings_dir)
    from ultralytics.utils.checks import check_yaml

    base = yaml.safe_load(Path(check_yaml(f"{config.tracker}.yaml")).read_text())
    base.update(config.tracking.model_dump())
    text = yaml.safe_dump(base, sort_keys=True)
    folder = _settings_folder(config.settings_dir)
    path = folder / f"{config.tracker}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def resolve_model(model: str, models_dir: Path | None = None) -> Path:
    """The detector file, or :class:`ModelNotFound` saying how to provide it."""
    return resolve_detector(model, models_dir).path


def resolve_detector(model: str, models_dir: Path | None = None) -> Resolved:
    """A manifest name (``yolo11n``: its file in the models directory) or a path.

    Paths keep their old meaning: an existing file as is, ``yolo11n.yaml`` an untrained
    architecture, a bare file name also looked up in the ultralytics weights folder and, when
    it is a manifest detector's file (``yolo11n.pt``), in the models directory. Errors are
    :class:`ModelNotFound` (with what to run) or :class:`ModelRejected` (hash mismatch, a name
    of another kind of model).
    """
    store = ModelStore(models_dir)
    if is_model_name(model, store.manifest):
        return _from_store(model, model, store)
    path = Path(model).expanduser()
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelNotFound(
            "detector model",
            model,
            f"Expected a file ending in {', '.join(MODEL_SUFFIXES)}, or a detector name of "
            f"`semcom models list` ({', '.join(store.manifest.names('detector'))}).",
        )
    if path.suffix.lower() in (".yaml", ".yml") and not path.exists():
        return Resolved(path, None)  # a built-in architecture name such as yolo11n.yaml (untrained)
    if not path.is_file() and path.parent == Path("."):
        cached = _ultralytics_weights_dir() / path.name  # the local ultralytics cache
        if cached.is_file():
            return Resolved(cached, None)
        for entry in store.manifest:
            if entry.kind == "detector" and entry.file == path.name:
                return _from_store(entry.name, model, store)
    if not path.is_file():
        raise ModelNotFound(
            "detector model",
            str(path),
            "Copy the weights file there (or into the ultralytics weights folder), or pass "
            "--detector PATH or a detector name of `semcom models list` (`semcom models pull "
            "yolo11n` on a connected machine); weights are never downloaded at run time.",
        )
    return Resolved(path, None)


def _from_store(name: str, given: str, store: ModelStore) -> Resolved:
    try:
        return resolve(name, "detector", store=store)
    except (ModelNotProvisioned, UnknownModel) as exc:
        raise ModelNotFound("detector model", given, f"{exc}.") from None
    except ModelError as exc:
        raise ModelRejected(f"detector model {given!r}: {exc}") from None


def _imgsz(config: DetectorConfig, entry: ModelEntry | None) -> int:
    pre = entry.preprocessing if entry is not None else None
    if pre is None:
        return config.imgsz
    own = max(pre.input_size)
    if "imgsz" not in config.model_fields_set:
        return own
    if config.imgsz != own and entry is not None and entry.family == "onnx":
        logger.warning(
            "detector %s was exported for imgsz %d, but imgsz is set to %d",
            entry.name,
            own,
            config.imgsz,
        )
    return config.imgsz


def _check_tensorrt(path: Path) -> None:
    """A ``.engine`` detector runs only where TensorRT and CUDA are: else one clear error."""
    from edge.accel import ON_THE_JETSON, tensorrt_missing

    missing = tensorrt_missing()
    if missing is not None:
        raise BackendUnavailable(
            f"detector {path} is a TensorRT engine, but this machine lacks {missing}. "
            f"{ON_THE_JETSON}; elsewhere use the .pt or an .onnx export of the detector."
        )


class Detector:
    """An ultralytics model run in tracking mode; one instance per video stream."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        resolved = resolve_detector(config.model)
        path = resolved.path
        #: Inference size (px): the config's, else the manifest entry's (a static ONNX export
        #: such as yolo11n-int8-320 only runs at its own size).
        self.imgsz = _imgsz(config, resolved.entry)
        if path.suffix.lower() == ".engine":
            _check_tensorrt(path)
        _offline_settings(config.settings_dir)
        from ultralytics import YOLO, settings

        settings.update({"sync": False})
        task = "detect" if path.suffix.lower() in (".onnx", ".engine") else None
        self._model: Any = YOLO(str(path), task=task)
        self.random_init = path.suffix.lower() in (".yaml", ".yml")
        if self.random_init:
            logger.warning("detector %s is an untrained architecture: boxes are noise", path.name)
        self.name = path.name
        self.class_names: dict[int, str] = dict(self._model.names)
        self._tracker = str(tracker_file(config))
        #: ms of the last :meth:`track` call outside ultralytics' own preprocess, inference
        #: and postprocess timings: its tracker's update, and the call's overhead
        self.last_track_ms: float | None = None
        if path.suffix.lower() == ".onnx":
            self._tune_onnx_session(path)

    def _tune_onnx_session(self, path: Path) -> None:
        """Rebuild ultralytics' ONNX Runtime session with our thread settings.

        ultralytics offers no way to pass session options through ``YOLO``; the session is
        created with the predictor on the first call, so run one blank frame and swap it.
        """
        c = self.config
        if c.ort_spinning and c.ort_threads is None:
            return
        import onnxruntime as ort

        self.track(np.zeros((self.imgsz, self.imgsz, 3), np.uint8))
        try:
            backend = self._model.predictor.model.backend
            old = backend.session
        except AttributeError:
            logger.warning("cannot apply ONNX Runtime thread settings to this ultralytics version")
            return
        options = ort.SessionOptions()
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if c.ort_spinning else "0"
        )
        if c.ort_threads is not None:
            options.intra_op_num_threads = c.ort_threads
        backend.session = ort.InferenceSession(str(path), options, providers=old.get_providers())
        self.reset()

    def track(self, image: NDArray[np.uint8]) -> FrameBoxes:
        """Detect and track road users in one BGR frame (state persists across calls)."""
        c = self.config
        kwargs: dict[str, Any] = {}
        if c.device is not None:
            kwargs["device"] = c.device
        start = time.perf_counter()
        results = self._model.track(
            image,
            imgsz=self.imgsz,
            conf=c.conf,
            iou=c.iou,
            classes=list(c.classes),
            persist=True,
            tracker=self._tracker,
            verbose=False,
            **kwargs,
        )
        total_ms = (time.perf_counter() - start) * 1e3
        speed = getattr(results[0], "speed", None) or {}
        own = sum(float(v) for v in speed.values() if v is not None)
        self.last_track_ms = max(0.0, total_ms - own) if speed else None
        boxes = results[0].boxes
        if boxes is None or len(boxes) == 0:
            return FrameBoxes.empty()
        ids = boxes.id
        n = len(boxes)
        return FrameBoxes(
            np.asarray(boxes.xyxy.cpu().numpy(), np.float32).reshape(n, 4),
            np.asarray(boxes.cls.cpu().numpy(), np.int64),
            np.asarray(boxes.conf.cpu().numpy(), np.float32),
            np.zeros(n, np.int64) if ids is None else np.asarray(ids.cpu().numpy(), np.int64),
        )

    def reset(self) -> None:
        """Forget every track (e.g. after a stream gap)."""
        predictor = getattr(self._model, "predictor", None)
        for tracker in getattr(predictor, "trackers", None) or []:
            tracker.reset()
