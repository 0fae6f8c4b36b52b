"""Embeddings of a source's RoI crops, made with the edge's own detector, crops and encoder."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edge.capture import open_source
from edge.config import EdgeConfig
from edge.crops import extract_crops
from edge.detect import Detector
from edge.embed import build_encoder


@dataclass(frozen=True)
class Sample:
    """Embeddings of a source's crops with the tracker's id and the capture time of each."""

    vectors: NDArray[np.float32]  # (n, dim) unit rows
    track_ids: NDArray[np.int64]  # (n,) the tracker's ids, unique within the source; 0: untracked
    times_us: NDArray[np.int64]  # (n,) capture times (the source's clock)
    description: str


def collect_embeddings(
    config: EdgeConfig, max_embeddings: int, every: int = 1
) -> tuple[NDArray[np.float32], str]:
    """Up to ``max_embeddings`` unit embeddings, and a description that says how they were made."""
    sample = collect_sample(config, max_embeddings, every)
    return sample.vectors, sample.description


def collect_sample(config: EdgeConfig, max_embeddings: int, every: int = 1) -> Sample:
    """Up to ``max_embeddings`` unit embeddings with their track ids and capture times."""
    source = open_source(config.source)
    detector = Detector(config.detector)
    encoder = build_encoder(config.encoder)
    p = encoder.preprocess
    chunks: list[NDArray[np.float32]] = []
    ids: list[NDArray[np.int64]] = []
    times: list[NDArray[np.int64]] = []
    total = frames = 0
    for frame in source.frames(threading.Event()):
        if frame.index % every:
            continue
        frames += 1
        boxes = detector.track(frame.image)
        if len(boxes):
            crops = extract_crops(
                frame.image, boxes.xyxy, p.size, config.crop.scale, p.interpolation
            )
            chunks.append(encoder.embed(crops))
            ids.append(np.asarray(boxes.track_ids, np.int64))
            times.append(np.full(len(crops), frame.capture_ts_us, np.int64))
            total += len(crops)
        if total >= max_embeddings:
            break
    vectors = np.concatenate(chunks)[:max_embeddings] if chunks else np.zeros((0, encoder.dim))
    weights = "RANDOM-INIT (not semantically meaningful)" if encoder.random_init else "trained"
    description = (
        f"{len(vectors)} {encoder.dim}-d embeddings from {encoder.name} ({weights}) of "
        f"S={config.crop.scale} crops of {detector.name} detections in {frames} frames of "
        f"{config.source.uri}"
    )

    def joined(parts: list[NDArray[np.int64]]) -> NDArray[np.int64]:
        return np.concatenate(parts)[: len(vectors)] if parts else np.zeros(0, np.int64)

    return Sample(np.asarray(vectors, np.float32), joined(ids), joined(times), description)
