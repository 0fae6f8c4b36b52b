"""Bundle frames (protocol 4): many data messages of one edge in one frame, one header.

A single frame (:mod:`shared.codec`) repeats the edge id, a full seq, a full capture time and
a send delta in every message (~30 of a small message's bytes). A bundle says the edge id
once, gives each message a seq delta (usually 1: one byte) and a capture-time delta in a
common time unit, numbers cameras through a table, and codes each message's fields with
varints; boxes are quantised to a grid of ``box_step`` units (1/65,535 of the frame) and a
tracked object's box is coded as the change from its previous box in the same bundle.
Confidences travel as one byte (k / 255). A bundle is self-contained: nothing carries over
from one bundle to the next, so a lost or reordered bundle never spoils another.

Layout (``docs/wire.md``, "Bundles"): the frame prefix of :mod:`shared.codec` with message
type ``BUNDLE_TYPE`` (32), then a body, zstd-compressed (flag bit 0) when that is smaller::

    edge_id str, box_step uv, time_unit_us uv, base_ts_us uv, send_delta_us sv,
    seq_base uv, cameras uv + str..., messages uv, then per message:
    type u8, seq_delta sv, ts_delta sv (time units), then its fields

(``uv``: unsigned LEB128 varint; ``sv``: zigzag varint; ``str``: uv length + UTF-8.)
Every decoded message is an :class:`~shared.messages.Envelope` of its own with its own seq;
its send time is the bundle's. :func:`decode_bundle` raises :class:`DecodeError` (or a
subclass) for every malformed input and nothing else.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Final

from shared import limits
from shared.bundle_grid import (
    BUNDLE_TYPE,
    BUNDLED_TYPES,
    CONF_STEPS,
    SUMMARY_PATH,
    BoxCoder,
    quantise,
    quantise_box,
    quantise_confidence,
)
from shared.bundle_read import decode_bundle
from shared.codec import FLAG_ZSTD, MAGIC, PREFIX_BYTES, decode
from shared.compression import Compressor, default_compressor
from shared.errors import EncodeError
from shared.geometry import BOX_UNITS
from shared.messages import (
    Detections,
    Embedding,
    Envelope,
    FrameCounts,
    TrackEnd,
    TrackSummary,
)
from shared.varint import write_svarint, write_uvarint

__all__ = [
    "BUNDLED_TYPES",
    "BUNDLE_TYPE",
    "decode_bundle",
    "decode_frame",
    "encode_bundle",
    "is_bundle",
    "quantise",
    "quantise_box",
    "quantise_confidence",
]

_PREFIX: Final = struct.Struct("<2sBBB")
_CODEC: Final = struct.Struct("<I")


def _conf_byte(confidence: float) -> int:
    return round(confidence * CONF_STEPS)


def _time_unit(envelopes: Sequence[Envelope], base: int) -> int:
    """The largest unit (us) every time offset in the bundle is a multiple of (a camera at a
    steady frame rate gives whole frame periods: one byte per delta)."""
    unit = 0
    for env in envelopes:
        unit = math.gcd(unit, env.capture_ts_us - base)
        m = env.message
        if isinstance(m, (TrackEnd, TrackSummary)):
            unit = math.gcd(unit, m.first_seen_us - env.capture_ts_us)
            unit = math.gcd(unit, m.last_seen_us - m.first_seen_us)
    return max(1, min(unit, limits.MAX_TS_US))


def _write_histogram(out: bytearray, counts: dict[int, int]) -> None:
    write_uvarint(out, len(counts))
    for key, value in counts.items():
        write_uvarint(out, key)
        write_uvarint(out, value)


def encode_bundle(
    envelopes: Sequence[Envelope],
    *,
    box_step: int = 1,
    send_ts_us: int | None = None,
    compressor: Compressor | None = None,
) -> bytes:
    """One bundle frame of ``envelopes`` (data messages of one edge, in the given order).

    ``send_ts_us`` (default: the latest send time among them) is the send time every message
    gets. Raises :class:`EncodeError` for an empty or over-limit bundle, mixed edge ids, a
    control message, or a frame over ``MAX_FRAME_BYTES``.
    """
    if not envelopes:
        raise EncodeError("a bundle needs at least one message")
    if len(envelopes) > limits.MAX_BUNDLE_MESSAGES:
        raise EncodeError(
            f"bundle of {len(envelopes)} messages exceeds max of {limits.MAX_BUNDLE_MESSAGES}"
        )
    if not 1 <= box_step <= BOX_UNITS:
        raise EncodeError(f"box step {box_step} is outside [1, {BOX_UNITS}]")
    edge_id = envelopes[0].edge_id
    cameras: dict[str, int] = {}
    for env in envelopes:
        if env.edge_id != edge_id:
            raise EncodeError(f"one bundle, two edges: {edge_id!r} and {env.edge_id!r}")
        if env.type not in BUNDLED_TYPES:
            raise EncodeError(f"{env.type.name} is a control message: it is never bundled")
        if env.seq < 1:
            raise EncodeError(f"{env.type.name} with seq 0 cannot be bundled (data needs seq >= 1)")
        cameras.setdefault(getattr(env.message, "camera", ""), len(cameras))
    cameras.pop("", None)
    base = envelopes[0].capture_ts_us
    send = max(e.send_ts_us for e in envelopes) if send_ts_us is None else send_ts_us
    unit = _time_unit(envelopes, base)
    out = bytearray()
    name = edge_id.encode()
    write_uvarint(out, len(name))
    out += name
    for v in (box_step, unit, base):
        write_uvarint(out, v)
    write_svarint(out, send - base)
    write_uvarint(out, envelopes[0].seq)
    write_uvarint(out, len(cameras))
    for cam in cameras:
        raw = cam.encode()
        write_uvarint(out, len(raw))
        out += raw
    write_uvarint(out, len(envelopes))
    boxes = BoxCoder(box_step)
    seq, ts = envelopes[0].seq, base
    for env in envelopes:
        out.append(int(env.type))
        write_svarint(out, env.seq - seq)
        write_svarint(out, (env.capture_ts_us - ts) // unit)
        seq, ts = env.seq, env.capture_ts_us
        _write_message(out, env, cameras, boxes, unit)
    return _frame(bytes(out), compressor)


def _write_message(
    out: bytearray, env: Envelope, cameras: dict[str, int], boxes: BoxCoder, unit: int
) -> None:
    m = env.message
    if isinstance(m, Detections):
        cam = cameras[m.camera]
        write_uvarint(out, cam)
        write_uvarint(out, len(m.boxes))
        for box, cls, conf, track in zip(
            m.boxes, m.class_ids, m.confidences, m.track_ids, strict=True
        ):
            write_uvarint(out, track)
            write_uvarint(out, cls)
            out.append(_conf_byte(conf))
            boxes.write(out, cam, track, box)
    elif isinstance(m, Embedding):
        cam = cameras[m.camera]
        write_uvarint(out, cam)
        write_uvarint(out, m.track_id)
        out.append(int(m.reason))
        write_uvarint(out, m.class_id)
        out.append(_conf_byte(m.confidence))
        boxes.write(out, cam, m.track_id, m.box)
        out += _CODEC.pack(m.codec)
        write_uvarint(out, len(m.code))
        out += m.code
    elif isinstance(m, TrackEnd):
        cam = cameras[m.camera]
        write_uvarint(out, cam)
        write_uvarint(out, m.track_id)
        write_svarint(out, (m.first_seen_us - env.capture_ts_us) // unit)
        write_uvarint(out, (m.last_seen_us - m.first_seen_us) // unit)
        write_uvarint(out, m.frames)
        _write_histogram(out, m.class_votes)
        write_uvarint(out, len(m.path))
        for box in m.path:
            boxes.write(out, cam, m.track_id, box)
    elif isinstance(m, FrameCounts):
        write_uvarint(out, cameras[m.camera])
        _write_histogram(out, m.counts)
    elif isinstance(m, TrackSummary):
        write_uvarint(out, cameras[m.camera])
        write_uvarint(out, m.track_id)
        write_svarint(out, (m.first_seen_us - env.capture_ts_us) // unit)
        write_uvarint(out, (m.last_seen_us - m.first_seen_us) // unit)
        write_uvarint(out, m.frames)
        _write_histogram(out, m.class_votes)
        out.append(int(m.final))
        path: bytes = SUMMARY_PATH.pack(m.path)
        write_uvarint(out, len(path))
        out += path
    else:  # pragma: no cover - encode_bundle lets only BUNDLED_TYPES through
        raise EncodeError(f"{type(m).__name__} has no bundle layout")


def _frame(body: bytes, compressor: Compressor | None) -> bytes:
    if len(body) > limits.MAX_BODY_BYTES:
        raise EncodeError(
            f"bundle body of {len(body)} bytes exceeds max of {limits.MAX_BODY_BYTES}"
        )
    flags = 0
    packed = (compressor or default_compressor()).compress(body)
    if packed is not None:
        body, flags = packed, FLAG_ZSTD
    frame = _PREFIX.pack(MAGIC, limits.PROTOCOL_VERSION, BUNDLE_TYPE, flags) + body
    if len(frame) > limits.MAX_FRAME_BYTES:
        raise EncodeError(f"bundle of {len(frame)} bytes exceeds max of {limits.MAX_FRAME_BYTES}")
    return frame


def is_bundle(frame: bytes) -> bool:
    """Whether ``frame`` claims to be a bundle (its prefix only; decoding checks the rest)."""
    return len(frame) > PREFIX_BYTES and frame[:2] == MAGIC and frame[3] == BUNDLE_TYPE


def decode_frame(frame: bytes, compressor: Compressor | None = None) -> list[Envelope]:
    """The messages of one frame: a bundle's, in order, or a single frame's one."""
    if is_bundle(frame):
        return decode_bundle(frame, compressor)
    return [decode(frame, compressor)]
