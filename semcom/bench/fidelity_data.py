"""The real sample of ``bench fidelity``: crops of tracked road users, embedded by the edge.

Each clip is run through the edge's own parts: :class:`edge.detect.Detector` in tracking mode
(state reset per clip), the RoI crop rule (:func:`edge.crops.extract_crops`: the S-scaled
square around each box at the encoder's input side) and the edge's encoder
(:func:`edge.embed.build_encoder`). Every ``frame_stride``-th frame is detected (the tracker
sees only those frames, as on an edge that samples its camera), and every box with a track id
becomes one crop. Untracked boxes (track id 0) are counted and left out: same-track recall
needs the track.

The sample keeps per crop: the f32 embedding, clip, track id, class, confidence, normalised
box and capture time (us since the clip's first frame). It can be cached under a key of
everything that shapes it (source files, detector and encoder settings and files, crop scale,
stride, frame limit).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from edge.config import CropConfig, DetectorConfig, SourceConfig, TimmEncoderConfig
from edge.detect import TrackingDetector
from edge.errors import SourceError

logger = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
_TRACK_STRIDE: Final = 10_000_000  # global track id = clip index * stride + tracker id


@dataclass(frozen=True)
class ExtractSpec:
    """What the sample is made from (see the module docstring)."""

    sources: tuple[Path, ...]
    """Video files; see :func:`expand_sources` for folders."""
    detector: DetectorConfig
    encoder: TimmEncoderConfig
    crop_scale: float = CropConfig().scale
    frame_stride: int = 3
    max_frames: int | None = None
    """Frames read per clip (None: the whole clip)."""


@dataclass(frozen=True)
class CropSample:
    """Embedded crops of several clips; row i of every array is crop i."""

    embeddings: NDArray[np.float32]  # (n, dim), unit-norm
    clips: NDArray[np.int64]  # (n,) index into clip_names
    track_ids: NDArray[np.int64]  # (n,) the tracker's id, unique within a clip
    classes: NDArray[np.int64]  # (n,) detector class ids
    confidences: NDArray[np.float32]  # (n,)
    boxes: NDArray[np.float32]  # (n, 4) x1, y1, x2, y2 normalised to the frame
    times_us: NDArray[np.int64]  # (n,) capture time since the clip's first frame
    clip_names: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    """encoder, dim, pretrained, runtime, detector, frames, untracked, frame_stride, key."""

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def tracks(self) -> NDArray[np.int64]:
        """Track ids unique across clips."""
        return self.clips * _TRACK_STRIDE + self.track_ids

    def select(self, rows: NDArray[np.bool_] | NDArray[np.intp]) -> CropSample:
        return CropSample(
            self.embeddings[rows],
            self.clips[rows],
            self.track_ids[rows],
            self.classes[rows],
            self.confidences[rows],
            self.boxes[rows],
            self.times_us[rows],
            self.clip_names,
            self.meta,
        )

    def save(self, path: Path) -> None:
        """Write atomically as plain arrays (no pickles) with the metadata as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            embeddings=self.embeddings,
            clips=self.clips,
            track_ids=self.track_ids,
            classes=self.classes,
            confidences=self.confidences,
            boxes=self.boxes,
            times_us=self.times_us,
            clip_names=np.asarray(self.clip_names, dtype=str),
            meta=np.array(json.dumps({"format": FORMAT_VERSION, **self.meta}, sort_keys=True)),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> CropSample:
        """Read a file written by :meth:`save`; ValueError if it is not one."""
        try:
            with path.open("rb") as fh, np.load(fh, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != FORMAT_VERSION:
                    raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT_VERSION}")
                return cls(
                    np.asarray(data["embeddings"], np.float32),
                    np.asarray(data["clips"], np.int64),
                    np.asarray(data["track_ids"], np.int64),
                    np.asarray(data["classes"], np.int64),
                    np.asarray(data["confidences"], np.float32),
                    np.asarray(data["boxes"], np.float32),
                    np.asarray(data["times_us"], np.int64),
                    tuple(str(s) for s in data["clip_names"]),
                    meta,
                )
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a fidelity sample: {exc}") from None


def expand_sources(sources: tuple[str, ...] | list[str]) -> tuple[Path, ...]:
    """Video files named by ``sources``: files as given, folders as their video files (sorted).

    :class:`SourceError` for a path that is missing, not a video, or a folder without videos,
    and when two clips share a file name (clips are named by file name in the report).
    """
    from edge.capture import VIDEO_SUFFIXES

    out: list[Path] = []
    for s in sources:
        path = Path(s).expanduser()
        if path.is_dir():
            videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not videos:
                raise SourceError(
                    f"folder {path} holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})"
                )
            out.extend(videos)
        elif not path.is_file():
            raise SourceError(f"source {path} does not exist (a video file or folder of videos)")
        elif path.suffix.lower() not in VIDEO_SUFFIXES:
            raise SourceError(f"source {path} is not a video file ({path.suffix!r})")
        else:
            out.append(path)
    names = [p.name for p in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SourceError(f"clips must have distinct file names; repeated: {', '.join(dupes)}")
    return tuple(out)


def _file_id(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def cache_key(spec: ExtractSpec) -> str:
    """SHA-256 (hex) of everything that shapes the sample."""
    det = spec.detector.model_dump(mode="json", exclude={"settings_dir", "ort_threads"})
    model = Path(spec.detector.model).expanduser()
    det["model"] = _file_id(model) if model.is_file() else spec.detector.model
    enc = spec.encoder.model_dump(mode="json", exclude={"threads", "batch_size", "onnx_cache_dir"})
    if spec.encoder.weights is not None and spec.encoder.weights.is_file():
        enc["weights"] = _file_id(spec.encoder.weights)
    payload = {
        "format": FORMAT_VERSION,
        "sources": [_file_id(p) for p in spec.sources],
        "detector": det,
        "encoder": enc,
        "crop_scale": spec.crop_scale,
        "frame_stride": spec.frame_stride,
        "max_frames": spec.max_frames,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _frames(path: Path, stride: int, max_frames: int | None) -> Iterator[Any]:
    """Every ``stride``-th frame of a video (indices 0, stride, ...), not paced."""
    from edge.capture import open_source

    source = open_source(SourceConfig(uri=str(path), pace=False, loop=False))
    for frame in source.frames(threading.Event()):
        if max_frames is not None and frame.index >= max_frames:
            return
        if frame.index % stride == 0:
            yield frame


def extract(
    spec: ExtractSpec,
    cache_dir: Path | None = None,
    *,
    progress: bool = True,
    detector: TrackingDetector | None = None,
) -> tuple[CropSample, bool]:
    """(the sample, whether it came from ``cache_dir``).

    ``detector`` replaces the one ``spec.detector`` describes (which still names it in the
    cache key): for tests on generated videos, where a COCO detector finds nothing.
    """
    key = cache_key(spec)
    path = cache_dir / f"fidelity-{key[:20]}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            cached = CropSample.load(path)
            if cached.meta.get("key") == key:
                logger.info("fidelity sample from cache %s (%d crops)", path, len(cached))
                return cached, True
        except ValueError as exc:
            logger.warning("re-extracting the fidelity sample: %s", exc)
    sample = _extract(spec, key, progress, detector)
    if path is not None:
        sample.save(path)
    return sample, False


def _extract(
    spec: ExtractSpec, key: str, progress: bool, detector: TrackingDetector | None
) -> CropSample:
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    from edge.crops import extract_crops
    from edge.detect import Detector
    from edge.embed import build_encoder

    detector = detector or Detector(spec.detector)
    encoder = build_encoder(spec.encoder)
    p = encoder.preprocess
    cols: dict[str, list[NDArray[Any]]] = {
        k: [] for k in ("embeddings", "clips", "track_ids", "classes", "conf", "boxes", "times")
    }
    frames = untracked = crops = 0
    for clip, path in enumerate(spec.sources):
        detector.reset()
        start_us: int | None = None
        bar = tqdm(desc=path.name, unit="frame", disable=not progress, leave=False)
        for frame in _frames(path, spec.frame_stride, spec.max_frames):
            frames += 1
            bar.update()
            start_us = frame.capture_ts_us if start_us is None else start_us
            boxes = detector.track(frame.image)
            tracked = boxes.track_ids > 0
            untracked += int((~tracked).sum())
            if not tracked.any():
                continue
            xyxy = boxes.xyxy[tracked]
            big = extract_crops(frame.image, xyxy, p.size, spec.crop_scale, p.interpolation)
            n = len(big)
            h, w = frame.image.shape[:2]
            cols["embeddings"].append(encoder.embed(big))
            cols["clips"].append(np.full(n, clip, np.int64))
            cols["track_ids"].append(boxes.track_ids[tracked])
            cols["classes"].append(boxes.class_ids[tracked])
            cols["conf"].append(boxes.confidences[tracked])
            scale = np.asarray([w, h, w, h], np.float32)
            cols["boxes"].append(np.clip(xyxy / scale, 0.0, 1.0))
            cols["times"].append(np.full(n, frame.capture_ts_us - start_us, np.int64))
            crops += n
            bar.set_postfix(crops=crops)
        bar.close()

    def cat(k: str, dtype: Any, shape: tuple[int, ...]) -> NDArray[Any]:
        return np.concatenate(cols[k]).astype(dtype) if cols[k] else np.zeros(shape, dtype)

    meta = {
        "key": key,
        "encoder": encoder.name,
        "dim": encoder.dim,
        "pretrained": not encoder.random_init,
        "runtime": encoder.runtime,
        "weights": str(spec.encoder.weights) if spec.encoder.weights else None,
        "model_kwargs": dict(spec.encoder.model_kwargs),
        "detector": detector.name,
        "imgsz": spec.detector.imgsz,
        "frames": frames,
        "untracked_boxes": untracked,
        "frame_stride": spec.frame_stride,
        "crop_scale": spec.crop_scale,
    }
    return CropSample(
        cat("embeddings", np.float32, (0, encoder.dim)),
        cat("clips", np.int64, (0,)),
        cat("track_ids", np.int64, (0,)),
        cat("classes", np.int64, (0,)),
        cat("conf", np.float32, (0,)),
        cat("boxes", np.float32, (0, 4)),
        cat("times", np.int64, (0,)),
        tuple(p.name for p in spec.sources),
        meta,
    )
