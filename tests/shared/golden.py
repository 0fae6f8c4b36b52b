"""Canonical messages whose encoded bytes are checked in as golden fixtures.

A change to the wire format breaks ``test_golden``; if the change is deliberate, bump
``PROTOCOL_VERSION`` and rewrite the fixtures with::

    .venv/bin/python -m tests.shared.golden --write
"""

from __future__ import annotations

import sys
from pathlib import Path

from shared.bundle import encode_bundle
from shared.codec import encode
from shared.compression import Compressor
from shared.geometry import Box
from shared.messages import (
    Ack,
    CameraInfo,
    CodebookAck,
    CodebookChunk,
    CodebookOffer,
    CodebookState,
    CodecRef,
    Detections,
    Embedding,
    EmitReason,
    Envelope,
    Error,
    ErrorCode,
    FrameCounts,
    Heartbeat,
    Hello,
    HelloAck,
    TrackEnd,
    TrackSummary,
)
from shared.pathwire import PathPoint, TrackPath

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
T0 = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z in microseconds

SAMPLES: dict[str, Envelope] = {
    "hello": Envelope(
        "edge-01",
        0,
        T0,
        T0,
        Hello(
            "0.1.0",
            "yolo11n.onnx",
            "vit_small_patch16_224",
            384,
            (CodecRef("f16", bytes(range(32))), CodecRef("pq32x8", bytes(range(32, 64)))),
            (CameraInfo("cam-01", 640, 360, 25.0),),
            True,
            "9b2f6c1e4d7a40e8a1c35f0b6e2d8a47",
        ),
    ),
    "hello_ack": Envelope(
        "cloud",
        0,
        T0,
        T0 + 1_500,
        HelloAck("s-7f3a", 41, 65_536, "9b2f6c1e4d7a40e8a1c35f0b6e2d8a47", 45),
    ),
    "detections": Envelope(
        "edge-01",
        42,
        T0 + 40_000,
        T0 + 52_000,
        Detections(
            "cam-01",
            (Box(0.1, 0.2, 0.25, 0.4), Box(0.5, 0.5, 0.75, 0.9)),
            (2, 7),
            (0.875, 0.5),
            (3, 9),
        ),
    ),
    "detections_many": Envelope(
        "edge-01",
        46,
        T0 + 120_000,
        T0 + 125_000,
        Detections(
            "cam-01",
            tuple(Box(0.01 * i, 0.5, 0.01 * i + 0.05, 0.6) for i in range(40)),
            (2,) * 40,
            (0.5,) * 40,
            tuple(range(1, 41)),
        ),
    ),
    "embedding": Envelope(
        "edge-01",
        43,
        T0 + 40_000,
        T0 + 53_000,
        Embedding(
            "cam-01",
            3,
            EmitReason.FIRST_SIGHT,
            2,
            0.875,
            Box(0.1, 0.2, 0.25, 0.4),
            0x1234ABCD,
            bytes(range(32)),
        ),
    ),
    "track_end": Envelope(
        "edge-01",
        44,
        T0 + 2_000_000,
        T0 + 2_010_000,
        TrackEnd(
            "cam-01",
            3,
            T0,
            T0 + 2_000_000,
            50,
            {2: 48, 7: 2},
            (Box(0.1, 0.2, 0.25, 0.4), Box(0.3, 0.2, 0.45, 0.4)),
        ),
    ),
    "frame_counts": Envelope(
        "edge-01", 45, T0 + 80_000, T0 + 81_000, FrameCounts("cam-01", {2: 4, 0: 1})
    ),
    "track_summary": Envelope(
        "edge-01",
        48,
        T0 + 2_000_000,
        T0 + 2_010_000,
        TrackSummary(
            "cam-01",
            3,
            T0,
            T0 + 2_000_000,
            50,
            {2: 48, 7: 2},
            True,
            TrackPath(
                64,
                (
                    PathPoint(0, Box(0.1, 0.2, 0.25, 0.4)),
                    PathPoint(1_000, Box(0.2, 0.2, 0.35, 0.4)),
                    PathPoint(2_000, Box(0.3, 0.2, 0.45, 0.4)),
                ),
            ),
        ),
    ),
    "ack": Envelope("cloud", 0, T0, T0, Ack(45, (46, 48, 50, 50))),
    "heartbeat": Envelope(
        "edge-01",
        0,
        T0,
        T0,
        Heartbeat(
            12,
            200_000.0,
            3,
            "int8",
            5_242_880,
            {"capture_fps": 25.0, "pipeline_fps": 24.5, "dropped": 3.0, "ack_ms_p95": 41.25},
        ),
    ),
    "error": Envelope(
        "cloud", 0, T0, T0, Error(ErrorCode.CODEC_MISMATCH, "codec 'pq32x8' mismatch", 43, True)
    ),
    "codebook_offer": Envelope(
        "cloud",
        0,
        T0,
        T0,
        CodebookOffer("pq32x8", bytes(range(32)), 70_000, "mobilenetv2_100", 1280),
    ),
    "codebook_chunk": Envelope(
        "cloud", 0, T0, T0, CodebookChunk(bytes(range(32)), 16_000, bytes(range(256)) * 4)
    ),
    "codebook_ack": Envelope(
        "edge-01", 0, T0, T0, CodebookAck(bytes(range(32)), CodebookState.WANT, 16_000, "")
    ),
}

#: One bundle (protocol 4): the data samples in one frame, boxes on a grid of 64 units, plus a
#: second Detections of the same tracks (coded as the change from their previous boxes).
BUNDLE_STEP = 64
BUNDLE_SAMPLES: list[Envelope] = [
    *(
        SAMPLES[name]
        for name in ("detections", "embedding", "track_end", "frame_counts", "track_summary")
    ),
    Envelope(
        "edge-01",
        47,
        T0 + 2_040_000,
        T0 + 2_050_000,
        Detections(
            "cam-01",
            (Box(0.11, 0.21, 0.26, 0.41), Box(0.52, 0.5, 0.77, 0.9)),
            (2, 7),
            (0.875, 0.5),
            (3, 9),
        ),
    ),
]
BUNDLE_SEND_TS = T0 + 2_060_000

#: Never compresses, so fixture bytes do not depend on the zstd library version.
RAW = Compressor(min_bytes=1 << 30)


def bundle_fixture(compressor: Compressor = RAW) -> bytes:
    return encode_bundle(
        BUNDLE_SAMPLES, box_step=BUNDLE_STEP, send_ts_us=BUNDLE_SEND_TS, compressor=compressor
    )


def write() -> None:
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, env in SAMPLES.items():
        (GOLDEN_DIR / f"{name}.bin").write_bytes(encode(env, RAW))
    # One compressed frame, checked by decoding only (zstd output may change across versions).
    (GOLDEN_DIR / "detections_zstd.bin").write_bytes(
        encode(SAMPLES["detections_many"], Compressor(min_bytes=0, level=19))
    )
    (GOLDEN_DIR / "bundle.bin").write_bytes(bundle_fixture())


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit("usage: python -m tests.shared.golden --write")
    write()
    print(f"wrote {len(SAMPLES) + 2} fixtures to {GOLDEN_DIR}")
