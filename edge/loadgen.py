"""Message streams without a camera: a synthetic traffic scene, or a recorded message file.

Used by ``semcom edge replay`` to load-test the uplink and by ``semcom bench link``. Both go
through the edge's real :class:`~edge.pipeline.Outbox` and sink (the spool, when uplinked),
and embeddings are encoded at emission time with the codec the rate controller chose, so the
codec ladder and the emission policy's chattiness act on them as on camera traffic.

The synthetic scene: road users arrive as a Poisson process and stay ``track_s`` seconds; each
sends a first-sight embedding once confirmed, an update every ``update_s`` (stretched by
``1 / chattiness``), and a TrackEnd when it leaves; every tick (``fps``) sends FrameCounts when
they changed, every 5th tick all boxes. Embedding vectors come from
:func:`shared.synthetic.clustered_embeddings` (one cluster point per track, small drift per
update): they are synthetic, and every report says so.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.pipeline import Outbox
from shared.codec import decode
from shared.errors import DecodeError
from shared.framing import read_frames
from shared.geometry import Box
from shared.messages import (
    CameraInfo,
    CodecRef,
    Detections,
    Embedding,
    EmitReason,
    FrameCounts,
    Hello,
    Message,
    TrackEnd,
)
from shared.synthetic import ClusteredSpec, clustered_embeddings
from shared.vectors import CodecSet, VectorCodec, fingerprint


class CodecChoice:
    """The codec each embedding is encoded with: the ladder rung the uplink's controller picks
    (``pick_rung``), or the first rung; ``adapt`` takes the controller's chattiness."""

    def __init__(self, ladder: list[VectorCodec]) -> None:
        self.ladder = ladder
        self.pick_rung: Callable[[], int] | None = None
        self.chattiness = 1.0

    @property
    def current(self) -> VectorCodec:
        return self.ladder[self.pick_rung() if self.pick_rung is not None else 0]

    def adapt(self, chattiness: float) -> None:
        self.chattiness = chattiness

    def hello(self, software_version: str, camera: str, random_init: bool = True) -> Hello:
        dim = self.ladder[0].dim
        refs = tuple(CodecRef(c.codec_id, c.content_hash) for c in self.ladder)
        return Hello(
            software_version,
            "synthetic",
            f"synthetic-{dim}d",
            dim,
            refs,
            (CameraInfo(camera, 1920, 1080, 10.0),),
            random_init,
        )


@dataclass(frozen=True)
class SceneSpec:
    tracks_per_s: float = 4.0
    track_s: float = 10.0
    update_s: float = 1.0
    fps: float = 10.0
    confirm_s: float = 0.3
    seed: int = 0


@dataclass
class _Track:
    track_id: int
    born: float
    vector: np.ndarray
    box: Box
    sent_at: float | None = None


class SyntheticScene:
    """Emits the scene's messages into an outbox in real time (or as fast as told)."""

    def __init__(self, spec: SceneSpec, codecs: CodecChoice, camera: str = "cam-synth") -> None:
        self.spec = spec
        self.codecs = codecs
        self.camera = camera
        self.rng = np.random.default_rng(spec.seed)
        dim = codecs.ladder[0].dim
        self.pool = clustered_embeddings(4096, ClusteredSpec(dim), spec.seed)
        self.tracks: dict[int, _Track] = {}
        self.next_id = 1
        self.ticks = 0
        self.sent: Counter[str] = Counter()

    def _embedding(self, track: _Track, reason: EmitReason, now_us: int) -> Embedding:
        noise = self.rng.standard_normal(track.vector.shape).astype(np.float32) * 0.05
        v = track.vector + noise
        v = (v / np.linalg.norm(v)).astype(np.float32)
        codec = self.codecs.current
        code = codec.encode(v[None, :])[0].tobytes()
        return Embedding(
            self.camera, track.track_id, reason, 2, 0.9, track.box, fingerprint(codec), code
        )

    def tick(self, t: float, now_us: int) -> list[Message]:
        """Messages of the scene at time ``t`` (seconds since the start)."""
        s = self.spec
        out: list[Message] = []
        self.ticks += 1
        for _ in range(int(self.rng.poisson(s.tracks_per_s / s.fps))):
            x = float(self.rng.uniform(0.0, 0.9))
            y = float(self.rng.uniform(0.0, 0.9))
            box = Box.from_pixels(x * 1920, y * 1080, x * 1920 + 120, y * 1080 + 90, 1920, 1080)
            vector = self.pool[int(self.rng.integers(len(self.pool)))]
            self.tracks[self.next_id] = _Track(self.next_id, t, vector, box)
            self.next_id += 1
        stretch = 1.0 / max(self.codecs.chattiness, 1e-3)
        for track in list(self.tracks.values()):
            if t - track.born >= s.track_s:
                del self.tracks[track.track_id]
                if track.sent_at is not None:
                    born_us = now_us - int((t - track.born) * 1e6)
                    out.append(
                        TrackEnd(
                            self.camera,
                            track.track_id,
                            born_us,
                            now_us,
                            int(s.track_s * s.fps),
                            {2: int(s.track_s * s.fps)},
                            (track.box,),
                        )
                    )
                continue
            if track.sent_at is None and t - track.born >= s.confirm_s:
                track.sent_at = t
                out.append(self._embedding(track, EmitReason.FIRST_SIGHT, now_us))
            elif track.sent_at is not None and t - track.sent_at >= s.update_s * stretch:
                track.sent_at = t
                out.append(self._embedding(track, EmitReason.KEYFRAME, now_us))
        every = max(1, round(stretch))
        if self.ticks % every == 0:
            out.append(FrameCounts(self.camera, {2: len(self.tracks)}))
        if self.tracks and self.ticks % (5 * every) == 0:
            boxes = list(self.tracks.values())[:512]
            out.append(
                Detections(
                    self.camera,
                    tuple(b.box for b in boxes),
                    tuple(2 for _ in boxes),
                    tuple(0.9 for _ in boxes),
                    tuple(b.track_id for b in boxes),
                )
            )
        return out

    def run(self, outbox: Outbox, seconds: float, stop: threading.Event) -> None:
        """Emit in real time for ``seconds`` (or until ``stop``)."""
        start = time.monotonic()
        period = 1.0 / self.spec.fps
        tick = 0
        while not stop.is_set():
            t = tick * period
            if t >= seconds:
                break
            delay = start + t - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            now_us = time.time_ns() // 1_000
            for message in self.tick(t, now_us):
                outbox.put(now_us, message)
                self.sent[type(message).__name__] += 1
            tick += 1


def recorded_hello(path: Path) -> Hello | None:
    """The Hello a message file was recorded under (who embedded it, how), if it holds one."""
    try:
        with open(path, "rb") as fh:
            for frame in read_frames(fh):
                env = decode(frame)
                if isinstance(env.message, Hello):
                    return env.message
                if env.seq != 0:
                    return None  # recordings start with their Hello
    except DecodeError as exc:
        raise DecodeError(f"{path}: {exc}") from None
    return None


def replay_file(
    path: Path,
    outbox: Outbox,
    codecs: CodecChoice,
    known: CodecSet,
    stop: threading.Event,
    rate: float | None = None,
) -> Counter[str]:
    """Send every data message of a message file through ``outbox``; embeddings are decoded
    with the codec they name (from ``known``) and re-encoded with the current codec. ``rate``
    paces messages per second (default: as fast as the sink takes them)."""
    sent: Counter[str] = Counter()
    start = time.monotonic()
    try:
        with open(path, "rb") as fh:
            for frame in read_frames(fh):
                if stop.is_set():
                    break
                env = decode(frame)
                if env.seq == 0:
                    continue
                message = env.message
                if isinstance(message, Embedding):
                    source = known.resolve(message.codec)
                    vector = source.decode(message.code)
                    target = codecs.current
                    message = Embedding(
                        message.camera,
                        message.track_id,
                        message.reason,
                        message.class_id,
                        message.confidence,
                        message.box,
                        fingerprint(target),
                        target.encode(vector)[0].tobytes(),
                    )
                if rate:
                    delay = start + sum(sent.values()) / rate - time.monotonic()
                    if delay > 0:
                        stop.wait(delay)
                outbox.put(env.capture_ts_us, message)
                sent[type(message).__name__] += 1
    except DecodeError as exc:
        raise DecodeError(f"{path}: {exc}") from None
    return sent
