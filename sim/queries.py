"""Fresh sightings to search the cloud's index with: the edge's own full-rate crops.

Same-track recall asks whether the cloud can find a road user again from another view of it.
:class:`QuerySampler` takes every ``every``-th frame's tracked boxes, crops them exactly as the
edge's pipeline crops an embedding request (its encoder's input size and interpolation, the
configured crop scale) and embeds them with the pipeline's encoder (through the measurement's
:class:`~sim.replay.CachingEncoder`, so a crop a policy asked for in the same frame is not
embedded twice). The f32 vectors are what a search by an image of that road user would send;
:mod:`sim.track_recall` searches the sent embeddings with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edge.crops import extract_crops
from edge.detect import FrameBoxes
from sim.replay import CachingEncoder

F32 = NDArray[np.float32]

DEFAULT_EVERY = 5
"""Frames between sampled frames (5 Hz at 25 fps)."""


@dataclass
class QuerySample:
    """Sampled crops: each one's row in the recording's RoIs and its f32 vector."""

    rows: list[int] = field(default_factory=list)
    vectors: list[F32] = field(default_factory=list)

    def array(self, dim: int) -> F32:
        if not self.vectors:
            return np.zeros((0, dim), np.float32)
        return np.stack(self.vectors).astype(np.float32)


class QuerySampler:
    """Embeds the tracked boxes of every ``every``-th frame (``every`` >= 1)."""

    def __init__(self, encoder: CachingEncoder, crop_scale: float, every: int = DEFAULT_EVERY):
        if every < 1:
            raise ValueError(f"query sampling every {every} frames: must be >= 1")
        self.encoder = encoder
        self.crop_scale = crop_scale
        self.every = every
        self.sample = QuerySample()

    def add(self, frame_index: int, image: NDArray[np.uint8], boxes: FrameBoxes, row0: int) -> None:
        """``row0``: the recording's RoI row of ``boxes``' first box."""
        if frame_index % self.every or not len(boxes):
            return
        keep = [i for i in range(len(boxes)) if int(boxes.track_ids[i]) > 0]
        if not keep:
            return
        p = self.encoder.preprocess
        xyxy = np.asarray(boxes.xyxy[keep], np.float32)
        crops = extract_crops(image, xyxy, p.size, self.crop_scale, p.interpolation)
        vectors = self.encoder.embed(crops)
        self.sample.rows.extend(row0 + i for i in keep)
        self.sample.vectors.extend(np.asarray(v, np.float32) for v in vectors)
