"""Run several emission presets on one pass over a clip without repeating model work.

The first pipeline detects and tracks; the others get the same boxes (:class:`ReplayDetector`),
each policy's re-linked ids and all its links are kept (:class:`RenameRecorder`),
and every pipeline embeds through one :class:`CachingEncoder` that computes each crop once per
frame (two presets asking for the same track in the same frame crop the same pixels).
:class:`KeepingCodec` keeps the f32 vectors a pipeline encoded, in order, so the fidelity
measures (:mod:`sim.fidelity`) can compare decoded codes with what the encoder gave.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge.detect import FrameBoxes, TrackingDetector
from edge.embed import Encoder
from edge.relink import Link
from shared.vectors import VectorCodec

F32 = NDArray[np.float32]


class RecordingDetector:
    """The pipeline's detector, keeping each frame's boxes (a pass-through wrapper)."""

    def __init__(self, inner: TrackingDetector) -> None:
        self.inner = inner
        self.name = inner.name
        self.last = FrameBoxes.empty()

    def track(self, image: NDArray[np.uint8]) -> FrameBoxes:
        self.last = self.inner.track(image)
        return self.last

    def reset(self) -> None:
        self.inner.reset()


class ReplayDetector:
    """Gives the boxes ``source`` found on the current frame (call after ``source.track``)."""

    def __init__(self, source: RecordingDetector) -> None:
        self.source = source
        self.name = source.name

    def track(self, image: NDArray[np.uint8]) -> FrameBoxes:
        return self.source.last

    def reset(self) -> None:
        """The source's tracker is reset by its own pipeline."""


class CachingEncoder:
    """An encoder that embeds each distinct crop of a frame once (keyed by its pixels' hash);
    :meth:`new_frame` forgets the previous frame's crops."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.random_init = inner.random_init
        self.runtime = inner.runtime
        self.execution = inner.execution
        self.preprocess = inner.preprocess
        self._cache: dict[bytes, F32] = {}
        self.computed = 0
        self.reused = 0

    def new_frame(self) -> None:
        self._cache.clear()

    def embed(self, crops: NDArray[np.uint8]) -> F32:
        keys = [hashlib.blake2b(c.tobytes(), digest_size=16).digest() for c in crops]
        todo: dict[bytes, int] = {}  # first row of each crop not embedded yet
        for i, k in enumerate(keys):
            if k not in self._cache and k not in todo:
                todo[k] = i
        if todo:
            vectors = self.inner.embed(np.ascontiguousarray(crops[list(todo.values())]))
            for k, v in zip(todo, vectors, strict=True):
                self._cache[k] = np.asarray(v, np.float32)
        self.computed += len(todo)
        self.reused += len(keys) - len(todo)
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._cache[k] for k in keys])


class RenameRecorder:
    """Stands in for a policy's relinker (edge/relink.py), keeping the track id it gave each
    box of each frame, in order, and every link it made: the edge's own ids, after re-linking,
    for the reference.

    The relinker itself keeps only its latest links (``links``, bounded so that a long-running
    edge does not grow); the recorder keeps each link :meth:`match` returns, all of a clip's.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ids: list[int] = []
        self.made: list[Link] = []  # every link, in the order the policy made them

    def rename(self, boxes: FrameBoxes, ts_us: int) -> FrameBoxes:
        out: FrameBoxes = self.inner.rename(boxes, ts_us)
        self.ids.extend(int(v) for v in out.track_ids)
        return out

    def match(self, track_id: int, vector: F32) -> Link | None:
        link: Link | None = self.inner.match(track_id, vector)
        if link is not None:
            self.made.append(link)
        return link

    def relinked_ids(self) -> list[int]:
        """The ids, with the frames a re-linked track was seen before its link (its first-sight
        embedding decides it) under the track it continues, as the policy merged them."""
        alias: dict[int, int] = {}
        for link in self.made:
            alias[link.new_id] = alias.get(link.old_id, link.old_id)
        return [alias.get(i, i) for i in self.ids]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class KeepingCodec:
    """A codec that remembers the vectors it encoded, in order, until :meth:`take` hands them
    back (the pipeline makes one Embedding per encoded row, in the same order)."""

    def __init__(self, inner: VectorCodec) -> None:
        self.inner = inner
        self._kept: deque[F32] = deque()

    @property
    def codec_id(self) -> str:
        return self.inner.codec_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def code_bytes(self) -> int:
        return self.inner.code_bytes

    @property
    def content_hash(self) -> bytes:
        return self.inner.content_hash

    def encode(self, vectors: NDArray[np.floating] | NDArray[np.integer]) -> NDArray[np.uint8]:
        self._kept.extend(np.asarray(v, np.float32) for v in np.atleast_2d(vectors))
        return self.inner.encode(vectors)

    def decode(self, codes: NDArray[np.uint8] | bytes) -> F32:
        return self.inner.decode(codes)

    def take(self) -> F32 | None:
        """The oldest encoded vector not yet taken (None when none is left)."""
        return self._kept.popleft() if self._kept else None
