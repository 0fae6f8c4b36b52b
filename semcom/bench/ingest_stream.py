"""The messages ``semcom bench ingest`` sends: one edge's Hello and its RoI ``Embedding`` frames.

Shared by the in-process measurement and the load generator, so both send the same bytes.
Each message is one RoI: a vector code (the codec's bytes, e.g. 384 B for int8 at 384-d), a
box, class, confidence and track id (a new track every ``TRACK_LEN`` messages, cameras taken in
turn), capture times 40 ms apart. Vectors are a clustered synthetic distribution
(:func:`shared.synthetic.clustered_embeddings`), which every report states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from shared.codec import encode
from shared.framing import BATCH_MAGIC, pack_batch, varint_size
from shared.geometry import Box
from shared.messages import CameraInfo, CodecRef, Embedding, EmitReason, Envelope, Hello
from shared.synthetic import ClusteredSpec, clustered_embeddings
from shared.vectors import VectorCodec, fingerprint

#: Messages per track (the first a FIRST_SIGHT, the others DRIFT updates).
TRACK_LEN: Final = 8
CAMERAS: Final = 4
#: Capture time of the first message (us since the epoch) and the spacing (us, 25 fps).
T0_US: Final = 1_700_000_000_000_000
STEP_US: Final = 40_000


@dataclass(frozen=True)
class EdgeStream:
    """One edge's stream, encoded: its Hello frame (seq 0) and data frames (seq i + 1)."""

    edge_id: str
    hello: bytes
    frames: list[bytes]

    @property
    def wire_bytes(self) -> int:
        return sum(len(f) for f in self.frames)


def vectors(n: int, dim: int, seed: int) -> NDArray[np.float32]:
    """``n`` unit vectors of the benchmark's clustered synthetic distribution (one draw for
    every edge: they film one world, and the draw's set-up is paid once)."""
    return clustered_embeddings(n, ClusteredSpec(dim), seed)


def edge_stream(
    edge_id: str,
    embeddings: NDArray[np.float32],
    codec: VectorCodec,
    rng: np.random.Generator,
    spool_id: str = "",
) -> EdgeStream:
    """One Embedding frame per row of ``embeddings`` (seqs 1..n) from ``edge_id``, and the
    Hello announcing ``codec``; ``spool_id`` names the sender's spool incarnation (the cloud's
    HelloAck refers to it)."""
    hello = Hello(
        "bench",
        "yolo11n",
        "vit_bench",
        codec.dim,
        (CodecRef(codec.codec_id, codec.content_hash),),
        tuple(CameraInfo(f"cam-{c}", 1920, 1080, 25.0) for c in range(CAMERAS)),
        False,
        spool_id,
    )
    codes = codec.encode(embeddings)
    fp = fingerprint(codec)
    frames = []
    for i in range(len(embeddings)):
        x, y = rng.uniform(0, 0.8, 2)
        msg = Embedding(
            f"cam-{(i // TRACK_LEN) % CAMERAS}",
            1 + i // TRACK_LEN,
            EmitReason.DRIFT if i % TRACK_LEN else EmitReason.FIRST_SIGHT,
            int(rng.integers(0, 8)),
            float(rng.uniform(0.3, 1.0)),
            Box(x, y, x + 0.1, y + 0.15),
            fp,
            codes[i].tobytes(),
        )
        ts = T0_US + i * STEP_US
        frames.append(encode(Envelope(edge_id, i + 1, ts, ts, msg)))
    return EdgeStream(edge_id, encode(Envelope(edge_id, 0, T0_US, T0_US, hello)), frames)


def record_bytes(frame: bytes) -> int:
    """Bytes ``frame`` takes inside a batch (its length prefix included)."""
    return varint_size(len(frame)) + len(frame)


def batches(frames: list[bytes], batch_bytes: int) -> list[bytes]:
    """``frames`` packed in order into batches of at most ``batch_bytes`` (as the edge packs
    its data-channel messages)."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = len(BATCH_MAGIC)
    for f in frames:
        if current and size + record_bytes(f) > batch_bytes:
            out.append(pack_batch(current))
            current, size = [], len(BATCH_MAGIC)
        current.append(f)
        size += record_bytes(f)
    if current:
        out.append(pack_batch(current))
    return out
