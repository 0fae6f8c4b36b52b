"""What bundle frames (:mod:`shared.bundle`) share between encoding and decoding: the frame
type, the message types a bundle carries, the box grid and confidence steps a bundle delivers
(:func:`quantise`), and the per-track box delta coder both sides run identically.
"""

from __future__ import annotations

from typing import Final

from shared.codec import BUNDLE_FRAME_TYPE
from shared.errors import DecodeError
from shared.geometry import BOX_UNITS, Box
from shared.messages import (
    Detections,
    Embedding,
    Message,
    MessageType,
    TrackEnd,
    TrackSummary,
)
from shared.schema import wire_fields
from shared.varint import Reader, write_svarint, write_uvarint

#: The frame type byte of a bundle (types 32 and up are frame kinds, not messages).
BUNDLE_TYPE: Final = BUNDLE_FRAME_TYPE
#: Data messages a bundle may carry (stored and acknowledged by seq); control messages
#: (Hello, Ack, Heartbeat, Error, codebook control) travel as single frames only.
BUNDLED_TYPES: Final = frozenset(
    {
        MessageType.DETECTIONS,
        MessageType.EMBEDDING,
        MessageType.TRACK_END,
        MessageType.FRAME_COUNTS,
        MessageType.TRACK_SUMMARY,
    }
)
#: A confidence travels as one byte, k / CONF_STEPS.
CONF_STEPS: Final = 255
#: A TrackSummary's path keeps its own compact coding (:mod:`shared.pathwire`), carried as is.
SUMMARY_PATH: Final = next(f for f in wire_fields(TrackSummary) if f.name == "path").metadata[
    "wire"
]


def grid_units(value: float, box_step: int) -> int:
    """A normalised coordinate as grid steps of ``box_step`` / 65,535 (rounded half up)."""
    return (round(value * BOX_UNITS) + box_step // 2) // box_step


def grid_max(box_step: int) -> int:
    return (BOX_UNITS + box_step // 2) // box_step


def from_grid(q: int, box_step: int) -> float:
    return min(q * box_step, BOX_UNITS) / BOX_UNITS


def quantise_box(box: Box, box_step: int) -> Box:
    """``box`` as a bundle of grid ``box_step`` delivers it."""
    x1, y1, x2, y2 = (grid_units(v, box_step) for v in (box.x1, box.y1, box.x2, box.y2))
    return Box(*(from_grid(q, box_step) for q in (x1, y1, x2, y2)))


def quantise_confidence(confidence: float) -> float:
    """A confidence as a bundle delivers it (one byte, k / 255)."""
    return round(confidence * CONF_STEPS) / CONF_STEPS


def quantise(message: Message, box_step: int) -> Message:
    """``message`` as it comes out of a bundle with grid ``box_step``: boxes on the grid,
    confidences on 1/255 steps, everything else exact (for tests and the simulator)."""
    if isinstance(message, Detections):
        return Detections(
            message.camera,
            tuple(quantise_box(b, box_step) for b in message.boxes),
            message.class_ids,
            tuple(quantise_confidence(c) for c in message.confidences),
            message.track_ids,
        )
    if isinstance(message, Embedding):
        return Embedding(
            message.camera,
            message.track_id,
            message.reason,
            message.class_id,
            quantise_confidence(message.confidence),
            quantise_box(message.box, box_step),
            message.codec,
            message.code,
        )
    if isinstance(message, TrackEnd):
        return TrackEnd(
            message.camera,
            message.track_id,
            message.first_seen_us,
            message.last_seen_us,
            message.frames,
            message.class_votes,
            tuple(quantise_box(b, box_step) for b in message.path),
        )
    return message


class BoxCoder:
    """Each tracked object's last box in this bundle, in grid steps (x1, y1, w, h): the
    encoder and the decoder update it identically, so a box is coded as the change."""

    def __init__(self, box_step: int) -> None:
        self.step = box_step
        self.qmax = grid_max(box_step)
        self.last: dict[tuple[int, int], tuple[int, int, int, int]] = {}

    def write(self, out: bytearray, camera: int, track_id: int, box: Box) -> None:
        s = self.step
        x1, y1 = grid_units(box.x1, s), grid_units(box.y1, s)
        q = (x1, y1, grid_units(box.x2, s) - x1, grid_units(box.y2, s) - y1)
        key = (camera, track_id)
        prev = self.last.get(key) if track_id else None
        if prev is None:
            for v in q:
                write_uvarint(out, v)
        else:
            for v, p in zip(q, prev, strict=True):
                write_svarint(out, v - p)
        if track_id:
            self.last[key] = q

    def read(self, r: Reader, camera: int, track_id: int, what: str) -> Box:
        key = (camera, track_id)
        prev = self.last.get(key) if track_id else None
        if prev is None:
            q = tuple(r.uvarint(what, self.qmax) for _ in range(4))
        else:
            q = tuple(p + r.svarint(what) for p in prev)
        x1, y1, w, h = q
        if min(q) < 0 or x1 + w > self.qmax or y1 + h > self.qmax:
            raise DecodeError(f"{what} leaves the frame: grid ({x1}, {y1}, {w}, {h})")
        if track_id:
            self.last[key] = (x1, y1, w, h)
        s = self.step
        return Box(from_grid(x1, s), from_grid(y1, s), from_grid(x1 + w, s), from_grid(y1 + h, s))
