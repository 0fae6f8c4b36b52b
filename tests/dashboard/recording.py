"""Recorded message files for the dashboard's tests: a few road users crossing one camera.

A recording is what ``semcom edge run --out FILE`` writes (a :class:`~edge.sink.FileSink` of
framed envelopes, the Hello first with seq 0), made here without a camera or detector: each
road user is a small PNG "crop" (:func:`crop_png`) embedded by the cloud's own query encoder
(a random-init ``vit_tiny_patch16_224``, the same weights in every process), so the stored
vectors and an uploaded crop's query vector are in one space and an image search for a road
user's crop finds that road user. The Hello names that encoder, its dim and the random-init
flag, so the cloud files the embeddings under the query encoder's space.

Per road user the file holds: a first-sight Embedding, a keyframe Embedding every 2 s, its box
in every Detections (``fps`` per second, moving across the frame), FrameCounts per frame, and
a TrackEnd with the sampled path (a box per second). Capture times start at ``t0_us`` (tests
take "now minus the duration", so a "last hour" view shows everything).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from edge.pipeline import Outbox
from edge.sink import FileSink
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
from shared.vectors import create_codec, fingerprint

ENCODER: Final = "vit_tiny_patch16_224"  # timm id; the cloud's `encoder.name` in these tests
CAMERA: Final = "cam-01"
WIDTH, HEIGHT = 1920, 1080
#: COCO ids as the edge's YOLO reports them: car, person, bicycle, truck, bus
CLASSES: Final = (2, 0, 1, 7, 5)


class Embedder(Protocol):
    """What makes the vectors (``cloud.encoder.QueryEncoder``)."""

    @property
    def dim(self) -> int: ...

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]: ...


def crop_png(seed: int, size: tuple[int, int] = (96, 64)) -> bytes:
    """A small PNG standing in for a road user's crop (a coloured block on texture)."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) // (2 + seed % 3)
    colour = rng.integers(0, 256, 3, dtype=np.uint8)
    pixels[height // 4 : 3 * height // 4, width // 5 : 4 * width // 5] = colour
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class RoadUser:
    """One tracked object of a recording: when it is in view, where it goes, what it looks
    like (``png``, embedded as ``vector``)."""

    track_id: int  # the edge tracker's id (the catalog's tracks.local_id)
    class_id: int
    start_s: float
    end_s: float
    origin: tuple[float, float]  # top-left corner at start_s (0-1 of the frame)
    velocity: tuple[float, float]  # per second (0-1 of the frame)
    png: bytes
    vector: NDArray[np.float32]

    def box(self, t: float) -> Box:
        dt = min(max(t, self.start_s), self.end_s) - self.start_s
        x = min(max(self.origin[0] + self.velocity[0] * dt, 0.0), 0.9)
        y = min(max(self.origin[1] + self.velocity[1] * dt, 0.0), 0.9)
        return Box(x, y, x + 0.08, y + 0.1)

    def visible(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


def road_users(
    embedder: Embedder, *, count: int, first_track_id: int, seconds: float, seed: int
) -> list[RoadUser]:
    """``count`` road users entering one after another in the first half of ``seconds``,
    each staying 4-6 s and crossing the frame; crops from seeds ``seed``, ``seed + 1``, ..."""
    rng = np.random.default_rng(seed)
    pngs = [crop_png(seed + i) for i in range(count)]
    vectors = embedder.embed([Image.open(io.BytesIO(p)).convert("RGB") for p in pngs])
    users = []
    for i in range(count):
        start = round(i * (seconds / 2) / max(count, 1), 2)
        end = min(start + float(rng.uniform(4.0, 6.0)), seconds)
        origin = (float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.1, 0.8)))
        velocity = (float(rng.uniform(0.06, 0.1)), float(rng.uniform(-0.03, 0.03)))
        users.append(
            RoadUser(
                first_track_id + i,
                CLASSES[i % len(CLASSES)],
                start,
                end,
                origin,
                velocity,
                pngs[i],
                vectors[i].astype(np.float32),
            )
        )
    return users


def hello(dim: int, software_version: str = "dashboard-tests") -> Hello:
    codec = create_codec("f16", dim)
    return Hello(
        software_version,
        "scripted-road-users",
        ENCODER,
        dim,
        (CodecRef(codec.codec_id, codec.content_hash),),
        (CameraInfo(CAMERA, WIDTH, HEIGHT, 10.0),),
        True,  # the vectors come from a random-init encoder: the cloud must say so
    )


def write_recording(
    path: Path,
    users: Sequence[RoadUser],
    *,
    t0_us: int,
    seconds: float,
    edge_id: str,
    fps: float = 5.0,
) -> Counter[str]:
    """Write the message file of ``users`` over ``seconds`` from ``t0_us``; what it holds."""
    dim = int(users[0].vector.shape[0])
    codec = create_codec("f16", dim)
    sink = FileSink(path)
    outbox = Outbox(edge_id, sink)
    outbox.put(t0_us, hello(dim), control=True)
    written: Counter[str] = Counter()
    embedded: dict[int, float] = {}  # track -> time of its last embedding

    def put(ts_us: int, message: Message) -> None:
        outbox.put(ts_us, message)
        written[type(message).__name__] += 1

    ticks = round(seconds * fps)
    for tick in range(ticks + 1):
        t = tick / fps
        ts = t0_us + round(t * 1e6)
        here = [u for u in users if u.visible(t)]
        for user in here:
            last = embedded.get(user.track_id)
            if last is None or t - last >= 2.0:
                embedded[user.track_id] = t
                reason = EmitReason.FIRST_SIGHT if last is None else EmitReason.KEYFRAME
                code = codec.encode(user.vector[None, :])[0].tobytes()
                put(
                    ts,
                    Embedding(
                        CAMERA,
                        user.track_id,
                        reason,
                        user.class_id,
                        0.9,
                        user.box(t),
                        fingerprint(codec),
                        code,
                    ),
                )
        if here:
            put(
                ts,
                Detections(
                    CAMERA,
                    tuple(u.box(t) for u in here),
                    tuple(u.class_id for u in here),
                    tuple(0.9 for _ in here),
                    tuple(u.track_id for u in here),
                ),
            )
        put(ts, FrameCounts(CAMERA, dict(Counter(u.class_id for u in here))))
        for user in users:  # ended this tick
            if user.end_s <= t < user.end_s + 1 / fps:
                frames = max(1, round((user.end_s - user.start_s) * fps))
                samples = [*np.arange(user.start_s, user.end_s, 1.0).tolist(), user.end_s]
                put(
                    ts,
                    TrackEnd(
                        CAMERA,
                        user.track_id,
                        t0_us + round(user.start_s * 1e6),
                        t0_us + round(user.end_s * 1e6),
                        frames,
                        {user.class_id: frames},
                        tuple(user.box(s) for s in samples),
                    ),
                )
    sink.close()
    return written
