"""The edge pipeline without I/O: a frame in, messages out.

:class:`EdgePipeline` runs detection + tracking, the emission policy, cropping, embedding and
the vector codec; :class:`Outbox` numbers, stamps and encodes the messages. The threaded runner
(:mod:`edge.runner`), benchmarks and ``sim`` drive these directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edge.capture import Frame
from edge.crops import extract_crops
from edge.detect import TrackingDetector
from edge.embed import Encoder
from edge.policy import EmbedRequest, EmissionPolicy
from edge.sink import MessageSink
from edge.spool import SpoolFull, priority_of
from shared.codec import encode
from shared.compression import Compressor
from shared.messages import (
    CameraInfo,
    CodecRef,
    Embedding,
    Envelope,
    Hello,
    Message,
)
from shared.vectors import VectorCodec, fingerprint

logger = logging.getLogger(__name__)

Timed = tuple[int, Message]  # (capture time in us, message)


class StageTimes:
    """Recent per-stage durations (ms), for status lines and benchmark percentiles; each
    ``observers`` callable gets every sample too (``stage, ms``: the edge's metrics)."""

    def __init__(self, keep: int = 100_000) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._keep = keep
        self._lock = threading.Lock()
        self.observers: list[Callable[[str, float], None]] = []

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, (time.perf_counter() - start) * 1e3)

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, deque(maxlen=self._keep)).append(ms)
        for observe in self.observers:
            observe(stage, ms)

    def percentiles(self) -> dict[str, dict[str, float]]:
        with self._lock:
            items = {k: np.asarray(v) for k, v in self._samples.items() if v}
        return {
            k: {
                "p50_ms": round(float(np.percentile(v, 50)), 3),
                "p95_ms": round(float(np.percentile(v, 95)), 3),
                "count": len(v),
            }
            for k, v in items.items()
        }


@dataclass(frozen=True, slots=True)
class EmbedJob:
    request: EmbedRequest
    crop: NDArray[np.uint8]


class EdgePipeline:
    def __init__(
        self,
        detector: TrackingDetector,
        encoder: Encoder,
        codec: VectorCodec,
        policy: EmissionPolicy,
        crop_scale: float,
        times: StageTimes | None = None,
        *,
        ladder: Sequence[VectorCodec] = (),
    ) -> None:
        """``ladder``: every codec the uplink may switch to (announced in Hello); ``codec``
        is used unless ``pick_rung`` is set."""
        self.ladder = tuple(ladder) or (codec,)
        if codec not in self.ladder:
            self.ladder = (codec, *self.ladder)
        for c in self.ladder:
            if c.dim != encoder.dim:
                raise ValueError(
                    f"codec {c.codec_id} encodes dim {c.dim}, the encoder gives {encoder.dim}"
                )
        self.detector = detector
        self.encoder = encoder
        self.codec = codec
        self._universal = codec  # what :meth:`drop` goes back to
        self.codec_fp = fingerprint(codec)
        #: when set (by the uplink's rate controller), picks the ladder rung of each batch
        self.pick_rung: Callable[[], int] | None = None
        #: a codebook the cloud pushed is in use (:meth:`adopt`): every batch uses ``codec``
        self.pinned = False
        self.policy = policy
        self.crop_scale = crop_scale
        self.times = times or StageTimes()
        self.rois = 0

    def detect(self, frame: Frame) -> tuple[list[Timed], list[EmbedJob]]:
        start = time.perf_counter()
        boxes = self.detector.track(frame.image)
        total_ms = (time.perf_counter() - start) * 1e3
        # A detector that tells how long its tracker took (ultralytics detects and tracks in
        # one call): "detect" is the rest, "track" that part.
        track_ms = getattr(self.detector, "last_track_ms", None)
        if track_ms is None:
            self.times.add("detect", total_ms)
        else:
            track_ms = min(max(float(track_ms), 0.0), total_ms)
            self.times.add("detect", total_ms - track_ms)
            self.times.add("track", track_ms)
        self.rois += len(boxes)
        with self.times.measure("policy"):
            messages, requests = self.policy.observe(
                frame.index, frame.capture_ts_us, frame.width, frame.height, boxes
            )
        jobs: list[EmbedJob] = []
        if requests:
            with self.times.measure("crop"):
                p = self.encoder.preprocess
                crops = extract_crops(
                    frame.image,
                    np.asarray([r.box_px for r in requests], np.float32),
                    p.size,
                    self.crop_scale,
                    p.interpolation,
                )
            jobs = [EmbedJob(r, c) for r, c in zip(requests, crops, strict=True)]
        return [(frame.capture_ts_us, m) for m in messages], jobs

    def embed(self, jobs: list[EmbedJob]) -> list[Timed]:
        if not jobs:
            return []
        with self.times.measure("embed"):
            vectors = self.encoder.embed(np.stack([j.crop for j in jobs]))
        out: list[Timed] = []
        if self.pick_rung is not None and not self.pinned:
            codec = self.ladder[self.pick_rung()]
            codec_fp = fingerprint(codec)
        else:
            codec = self.codec  # one read: adopt() may switch it from another thread
            codec_fp = fingerprint(codec)
        with self.times.measure("codec"):
            keep = [
                i for i, j in enumerate(jobs) if self.policy.on_embedding(j.request, vectors[i])
            ]
            codes = codec.encode(vectors[keep]) if keep else None
            for k, i in enumerate(keep):
                r = jobs[i].request
                assert codes is not None
                out.append(
                    (
                        r.capture_ts_us,
                        Embedding(
                            self.policy.camera,
                            r.track_id,
                            r.reason,
                            r.class_id,
                            r.confidence,
                            r.box,
                            codec_fp,
                            codes[k].tobytes(),
                        ),
                    )
                )
        return out

    def process(self, frame: Frame) -> list[Timed]:
        """Both stages inline (no threads): for tests, benchmarks and simulation."""
        messages, jobs = self.detect(frame)
        return messages + self.embed(jobs)

    def finish(self) -> list[Timed]:
        now = time.time_ns() // 1_000
        return [(now, m) for m in self.policy.flush()]

    def adopt(self, codec: VectorCodec) -> None:
        """Encode every embedding from now on with ``codec`` (a codebook the cloud fitted and
        pushed), announced from the next Hello on with the ladder's codecs. The caller
        announces that Hello before calling this (edge.daemon), so no frame is ever spooled
        under a Hello that does not name its codec."""
        if codec.dim != self.encoder.dim:
            raise ValueError(
                f"codec {codec.codec_id} encodes dim {codec.dim}, the encoder gives "
                f"{self.encoder.dim}"
            )
        if all(c.content_hash != codec.content_hash for c in self.ladder):
            self.ladder = (*self.ladder, codec)
        self.codec_fp = fingerprint(codec)
        self.codec = codec
        self.pinned = True  # after the codec: a batch that sees it pinned encodes with it

    def drop(self, codec: VectorCodec) -> None:
        """Stop using ``codec`` (a codebook the cloud does not have): embeddings go back to
        the codec the pipeline was built with (and the ladder's rungs), unpinned."""
        self.ladder = tuple(c for c in self.ladder if c.content_hash != codec.content_hash)
        if self.codec.content_hash == codec.content_hash:
            self.pinned = False  # before the codec: a batch that sees it unpinned uses the ladder
            self.codec_fp = fingerprint(self._universal)
            self.codec = self._universal

    def hello(self, software_version: str, frame: Frame, fps: float | None) -> Hello:
        return Hello(
            software_version,
            self.detector.name,
            self.encoder.name,
            self.encoder.dim,
            tuple(CodecRef(c.codec_id, c.content_hash) for c in self.ladder),
            (CameraInfo(self.policy.camera, frame.width, frame.height, min(fps or 0.0, 1000.0)),),
            self.encoder.random_init,
        )


@dataclass
class OutboxStats:
    messages: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # the full spool kept older ones
    last_at: float | None = None  # time.monotonic() of the last message made

    @property
    def total_messages(self) -> int:
        return sum(self.messages.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


class Outbox:
    """Stamps and encodes messages and hands them to the sink, which numbers them (seq)."""

    def __init__(
        self,
        edge_id: str,
        sink: MessageSink,
        *,
        compressor: Compressor | None = None,
        times: StageTimes | None = None,
    ) -> None:
        self.edge_id = edge_id
        self.sink = sink
        self.stats = OutboxStats()
        self._compressor = compressor or Compressor()
        self.times = times or StageTimes()
        self._lock = threading.Lock()
        self._flushed = time.monotonic()

    def put(self, capture_ts_us: int, message: Message, *, control: bool = False) -> int:
        """Send one message (returns its encoded size, 0 if the spool refused it); control
        messages (Hello) carry seq 0 and are not numbered."""
        name = type(message).__name__
        size = 0
        encode_ms = 0.0

        def make_frame(seq: int) -> bytes:
            nonlocal size, encode_ms
            start = time.perf_counter()
            now = time.time_ns() // 1_000
            frame = encode(
                Envelope(self.edge_id, seq, capture_ts_us, now, message), self._compressor
            )
            encode_ms = (time.perf_counter() - start) * 1e3
            self.times.add("encode", encode_ms)
            size = len(frame)
            return frame

        with self._lock:
            if control:
                self.sink.control(message, make_frame(0))
            else:
                start = time.perf_counter()
                try:
                    self.sink.append(priority_of(message), make_frame)
                except SpoolFull as exc:
                    self.stats.refused[name] += 1
                    logger.warning("%s not spooled: %s", name, exc)
                    return 0
                # the sink's own time (a spool commits to disk), without the encoding
                self.times.add("spool", (time.perf_counter() - start) * 1e3 - encode_ms)
            self.stats.messages[name] += 1
            self.stats.bytes[name] += size
            self.stats.last_at = time.monotonic()
            return size

    def counts(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Thread-safe copies of (messages, bytes, refused) by message type."""
        with self._lock:
            s = self.stats
            return dict(s.messages), dict(s.bytes), dict(s.refused)

    def put_all(self, messages: list[Timed]) -> None:
        for ts, message in messages:
            self.put(ts, message)

    def flush(self) -> None:
        with self._lock:
            self.sink.flush()
            self._flushed = time.monotonic()

    def flush_if_due(self, every_s: float = 1.0) -> None:
        """Flush the sink when ``every_s`` passed since the last flush (bounds data at risk)."""
        if time.monotonic() - self._flushed >= every_s:
            self.flush()
