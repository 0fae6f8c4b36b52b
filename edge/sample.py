"""Embeddings of a source's RoI crops, made with the edge's own detector, crops and encoder."""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray

from edge.capture import open_source
from edge.config import EdgeConfig
from edge.crops import extract_crops
from edge.detect import Detector
from edge.embed import build_encoder


def collect_embeddings(
    config: EdgeConfig, max_embeddings: int, every: int = 1
) -> tuple[NDArray[np.float32], str]:
    """Up to ``max_embeddings`` unit embeddings, and a description that says how they were made."""
    source = open_source(config.source)
    detector = Detector(config.detector)
    encoder = build_encoder(config.encoder)
    p = encoder.preprocess
    chunks: list[NDArray[np.float32]] = []
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
    return np.asarray(vectors, np.float32), description
