"""The decoder's (crop, embedding) pairs, made by the edge's own detect / crop / embed code.

The cloud may not import the edge, so the builder lives here: for each source (video file or
image folder) it runs :class:`edge.detect.Detector` (tracking, so crops of one object share a
group for the held-out split), :func:`edge.crops.extract_crops` at the encoder's input side
with the S crop scale, the edge's encoder (:func:`edge.embed.build_encoder`, the same runtime
choice as the edge), and optionally the codec round trip (``shared.vectors``) so the decoder
learns from what the cloud actually receives. Crops are stored at the decoder's side (area
resampling) in a :class:`cloud.decoder.dataset.CropDataset`.

The result is cached under a key of everything that shapes it: source files (path, size,
mtime), detector file and settings, encoder (name, weights file, random-init flag, runtime,
model_kwargs, preprocessing), codec, crop scale, decoder side, sampling rate and crop limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from cloud.decoder.dataset import CropDataset, DatasetMeta
from cloud.decoder.errors import DatasetError
from edge.config import CropConfig, DetectorConfig, SourceConfig, TimmEncoderConfig
from edge.detect import TrackingDetector

logger = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
DEFAULT_CACHE: Final = Path.home() / ".cache" / "semcom" / "decoder-data"
_GROUP_STRIDE: Final = 10_000_000  # group id = source index * stride + track id


@dataclass(frozen=True)
class BuildSpec:
    """What to build a crop dataset from (see the module docstring)."""

    sources: tuple[str, ...]
    detector: DetectorConfig
    encoder: TimmEncoderConfig
    codec: str
    """Codec id (f32, f16, int8) or codebook .npz the embeddings go through."""
    image_size: int = 64
    crop_scale: float = CropConfig().scale
    sample_fps: float | None = 5.0
    """Frames per second taken from videos (None: every frame); tracks move little between
    neighbouring frames, so a few per second give most of the variety at a fraction of the
    encoder time."""
    max_crops: int | None = None


def _file_id(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _source_id(uri: str) -> list[Any]:
    path = Path(uri).expanduser()
    if path.is_dir():
        return [_file_id(p) for p in sorted(path.iterdir()) if p.is_file()]
    if path.is_file():
        return _file_id(path)
    return [uri]


def _absolute(model: str) -> str:
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def cache_key(spec: BuildSpec) -> str:
    """SHA-256 (hex) of everything that shapes the dataset."""
    from edge.detect import resolve_model

    det = spec.detector
    enc = spec.encoder
    codec = spec.codec
    codec_id: Any = _file_id(Path(codec)) if codec.endswith(".npz") else codec
    runtime = enc.runtime
    if runtime == "auto":
        runtime = "onnx-int8" if enc.device == "cpu" else "torch"
    payload = {
        "format": FORMAT_VERSION,
        "sources": [_source_id(s) for s in spec.sources],
        "detector": [
            _file_id(resolve_model(det.model)) if Path(det.model).exists() else det.model,
            det.imgsz,
            det.conf,
            det.iou,
            list(det.classes),
            det.tracker,
            det.tracking.model_dump(),
        ],
        "encoder": [
            enc.name,
            _file_id(enc.weights) if enc.weights else None,
            enc.random_init,
            runtime,
            enc.model_kwargs,
            enc.preprocess.model_dump(mode="json"),
        ],
        "codec": codec_id,
        "image_size": spec.image_size,
        "crop_scale": spec.crop_scale,
        "sample_fps": spec.sample_fps,
        "max_crops": spec.max_crops,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(spec: BuildSpec, cache_dir: Path) -> Path:
    return cache_dir / f"crops-{spec.image_size}px-{cache_key(spec)[:20]}.npz"


def _resize(crops: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    import cv2

    if crops.shape[1] == size:
        return crops
    flag = cv2.INTER_AREA if crops.shape[1] > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(c, (size, size), interpolation=flag) for c in crops])


def _frames(uri: str, sample_fps: float | None) -> Iterable[Any]:
    from edge.capture import open_source

    config = SourceConfig(uri=uri, fps=sample_fps, pace=False, loop=False)
    return open_source(config).frames(threading.Event())


def build_dataset(
    spec: BuildSpec,
    cache_dir: Path = DEFAULT_CACHE,
    *,
    refresh: bool = False,
    progress: bool = True,
    detector: TrackingDetector | None = None,
) -> tuple[CropDataset, Path, bool]:
    """(dataset, its cache file, whether it came from the cache).

    ``detector`` replaces the one ``spec.detector`` describes (which still names it in the
    cache key); for tests with generated videos, where a real detector finds nothing.
    """
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    from edge.crops import extract_crops
    from edge.detect import Detector
    from edge.embed import build_encoder
    from shared.vectors import create_codec

    key = cache_key(spec)
    path = cache_path(spec, cache_dir)
    if path.is_file() and not refresh:
        try:
            cached = CropDataset.load(path)
            if cached.meta.key == key:
                logger.info("crop dataset from cache %s (%d crops)", path, len(cached))
                return cached, path, True
        except DatasetError as exc:
            logger.warning("rebuilding the crop dataset: %s", exc)

    detector = detector or Detector(spec.detector)
    encoder = build_encoder(spec.encoder)
    codec = create_codec(spec.codec, encoder.dim)
    p = encoder.preprocess
    crops: list[NDArray[np.uint8]] = []
    vectors: list[NDArray[np.float32]] = []
    groups: list[NDArray[np.int64]] = []
    classes: list[NDArray[np.int64]] = []
    total = frames = 0
    untracked = 0
    for index, uri in enumerate(spec.sources):
        detector.reset()
        bar = tqdm(desc=Path(uri).name, unit="frame", disable=not progress, leave=False)
        for frame in _frames(uri, spec.sample_fps):
            frames += 1
            bar.update()
            boxes = detector.track(frame.image)
            if len(boxes) == 0:
                continue
            big = extract_crops(frame.image, boxes.xyxy, p.size, spec.crop_scale, p.interpolation)
            emb = encoder.embed(big)
            vectors.append(codec.decode(codec.encode(emb)))  # what the cloud receives
            crops.append(_resize(big, spec.image_size))
            ids = boxes.track_ids.copy()
            for i in np.flatnonzero(ids == 0):  # untracked: a group of its own
                untracked += 1
                ids[i] = -untracked
            groups.append(np.where(ids > 0, index * _GROUP_STRIDE + ids, ids))
            classes.append(boxes.class_ids)
            total += len(boxes)
            bar.set_postfix(crops=total)
            if spec.max_crops is not None and total >= spec.max_crops:
                break
        bar.close()
        if spec.max_crops is not None and total >= spec.max_crops:
            break
    s = spec.image_size
    limit = spec.max_crops if spec.max_crops is not None else total
    meta = DatasetMeta(
        encoder=encoder.name,
        embed_dim=encoder.dim,
        random_init=encoder.random_init,
        codec=codec.codec_id,
        codec_hash=codec.content_hash.hex(),
        code_bytes=codec.code_bytes,
        image_size=s,
        crop_scale=spec.crop_scale,
        detector=detector.name,
        key=key,
        sources=[str(Path(u).expanduser().resolve()) for u in spec.sources],
        frames=frames,
        runtime=encoder.runtime,
        codec_spec=spec.codec,
        detector_path=_absolute(spec.detector.model),
        detector_imgsz=spec.detector.imgsz,
        sample_fps=spec.sample_fps,
        max_crops=spec.max_crops,
    )
    dataset = CropDataset(
        np.concatenate(crops)[:limit] if crops else np.zeros((0, s, s, 3), np.uint8),
        np.concatenate(vectors)[:limit].astype(np.float32)
        if vectors
        else np.zeros((0, encoder.dim), np.float32),
        np.concatenate(groups)[:limit].astype(np.int64) if groups else np.zeros(0, np.int64),
        np.concatenate(classes)[:limit].astype(np.int64) if classes else np.zeros(0, np.int64),
        meta,
    )
    dataset.save(path)
    logger.info("crop dataset: %s -> %s", describe(dataset), path)
    return dataset, path, False


def describe(dataset: CropDataset) -> str:
    m = dataset.meta
    weights = "RANDOM-INIT (embeddings carry no meaning)" if m.random_init else "trained"
    objects = len(np.unique(dataset.groups))
    return (
        f"{len(dataset)} crops of {objects} objects from {m.frames} frames of "
        f"{len(m.sources)} source(s); {m.encoder} {m.embed_dim}-d ({weights}, {m.runtime}), "
        f"codec {m.codec} ({m.code_bytes} B/code), S={m.crop_scale} crops at {m.image_size} px, "
        f"detector {m.detector}"
    )


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 64))
