"""Decoding bundle frames (:mod:`shared.bundle`): every malformed input is one precise
:class:`DecodeError` (or a subclass), never another exception, in bounded time and memory.
"""

from __future__ import annotations

import struct
from typing import Final

from shared import limits
from shared.bundle_grid import BUNDLE_TYPE, BUNDLED_TYPES, CONF_STEPS, SUMMARY_PATH, BoxCoder
from shared.codec import FLAG_ZSTD, MAGIC, PREFIX_BYTES
from shared.compression import Compressor, default_compressor
from shared.errors import DecodeError, FrameTooLarge, InvalidMessage, VersionMismatch
from shared.geometry import BOX_UNITS
from shared.messages import (
    Detections,
    Embedding,
    EmitReason,
    Envelope,
    FrameCounts,
    Message,
    MessageType,
    TrackEnd,
    TrackSummary,
)
from shared.varint import Reader

_PREFIX: Final = struct.Struct("<2sBBB")
_CODEC: Final = struct.Struct("<I")


def decode_bundle(frame: bytes, compressor: Compressor | None = None) -> list[Envelope]:
    """Parse a bundle; :class:`DecodeError` with a precise reason for any bad input."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(frame).__name__}")
    if len(frame) > limits.MAX_FRAME_BYTES:
        raise FrameTooLarge("frame", len(frame), limits.MAX_FRAME_BYTES)
    if len(frame) <= PREFIX_BYTES:
        raise DecodeError(f"truncated bundle: {len(frame)} bytes, need more than {PREFIX_BYTES}")
    magic, version, kind, flags = _PREFIX.unpack_from(frame)
    if magic != MAGIC:
        raise DecodeError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version not in limits.BUNDLE_VERSIONS:
        raise VersionMismatch(version, limits.BUNDLE_VERSIONS)
    if kind != BUNDLE_TYPE:
        raise DecodeError(f"not a bundle: frame type {kind}")
    if flags & ~FLAG_ZSTD:
        raise DecodeError(f"unknown flag bits {flags & ~FLAG_ZSTD:#04x}")
    body = bytes(frame[PREFIX_BYTES:])
    if flags & FLAG_ZSTD:
        body = (compressor or default_compressor()).decompress(body)
    try:
        return _read_body(Reader(body))
    except InvalidMessage as exc:
        raise DecodeError(exc.reason, field=exc.field) from None


def _read_body(r: Reader) -> list[Envelope]:
    edge_id = r.text("edge id", limits.MAX_ID_CHARS)
    box_step = r.uvarint("box step", BOX_UNITS)
    if box_step < 1:
        raise DecodeError("box step 0: must be at least 1")
    unit = r.uvarint("time unit", limits.MAX_TS_US)
    if unit < 1:
        raise DecodeError("time unit 0 us: must be at least 1")
    base = r.uvarint("base capture time", limits.MAX_TS_US)
    send = base + r.svarint("send delta")
    if not 0 <= send <= limits.MAX_TS_US:
        raise DecodeError(f"send time {send} us is outside [0, {limits.MAX_TS_US}]")
    seq = r.uvarint("seq base", limits.MAX_SEQ)
    n_cameras = r.uvarint("camera count", limits.MAX_CAMERAS)
    cameras = [r.text(f"camera {i}", limits.MAX_ID_CHARS) for i in range(n_cameras)]
    count = r.uvarint("message count", limits.MAX_BUNDLE_MESSAGES)
    if count == 0:
        raise DecodeError("empty bundle: message count 0")
    boxes = BoxCoder(box_step)
    out: list[Envelope] = []
    seen: set[int] = set()
    ts = base
    for i in range(count):
        type_byte = r.byte(f"message {i} type")
        try:
            mtype = MessageType(type_byte)
        except ValueError:
            raise DecodeError(f"unknown message type {type_byte} in bundle (message {i})") from None
        if mtype not in BUNDLED_TYPES:
            raise DecodeError(f"control message {mtype.name} inside a bundle (message {i})")
        seq += r.svarint(f"message {i} seq delta")
        if not 1 <= seq <= limits.MAX_SEQ:
            raise DecodeError(f"message {i}: seq {seq} is outside [1, {limits.MAX_SEQ}]")
        if seq in seen:
            raise DecodeError(f"message {i}: seq {seq} twice in one bundle")
        seen.add(seq)
        ts += r.svarint(f"message {i} time delta") * unit
        if not 0 <= ts <= limits.MAX_TS_US:
            raise DecodeError(
                f"message {i}: capture time {ts} us is outside [0, {limits.MAX_TS_US}]"
            )
        message = _read_message(r, mtype, cameras, boxes, ts, unit, f"message {i}")
        out.append(Envelope(edge_id, seq, ts, send, message))
    if r.left:
        raise DecodeError(f"{r.left} trailing bytes after the bundle's last message")
    return out


def _camera(r: Reader, cameras: list[str], what: str) -> tuple[int, str]:
    index = r.uvarint(f"{what} camera index")
    if index >= len(cameras):
        raise DecodeError(f"{what}: camera index {index}, the bundle names {len(cameras)}")
    return index, cameras[index]


def _conf(r: Reader, what: str) -> float:
    return r.byte(what) / CONF_STEPS


def _histogram(r: Reader, what: str) -> dict[int, int]:
    n = r.uvarint(f"{what} entries", limits.MAX_CLASS_ENTRIES)
    out: dict[int, int] = {}
    for _ in range(n):
        key = r.uvarint(f"{what} class", limits.MAX_CLASS_ID)
        out[key] = r.uvarint(f"{what} count", limits.MAX_COUNT)
    return out


def _read_message(
    r: Reader,
    mtype: MessageType,
    cameras: list[str],
    boxes: BoxCoder,
    ts: int,
    unit: int,
    what: str,
) -> Message:
    if mtype is MessageType.DETECTIONS:
        cam, camera = _camera(r, cameras, what)
        n = r.uvarint(f"{what} box count", limits.MAX_DETECTIONS)
        tracks, classes, confs, out = [], [], [], []
        for j in range(n):
            track = r.uvarint(f"{what} track id", 2**32 - 1)
            tracks.append(track)
            classes.append(r.uvarint(f"{what} class id", limits.MAX_CLASS_ID))
            confs.append(_conf(r, f"{what} confidence"))
            out.append(boxes.read(r, cam, track, f"{what} box {j}"))
        return Detections(camera, tuple(out), tuple(classes), tuple(confs), tuple(tracks))
    if mtype is MessageType.EMBEDDING:
        cam, camera = _camera(r, cameras, what)
        track = r.uvarint(f"{what} track id", 2**32 - 1)
        reason_byte = r.byte(f"{what} reason")
        try:
            reason = EmitReason(reason_byte)
        except ValueError:
            raise DecodeError(f"{what}: unknown emit reason {reason_byte}") from None
        class_id = r.uvarint(f"{what} class id", limits.MAX_CLASS_ID)
        conf = _conf(r, f"{what} confidence")
        box = boxes.read(r, cam, track, f"{what} box")
        (codec,) = _CODEC.unpack(r.take(_CODEC.size, f"{what} codec"))
        code = r.take(r.uvarint(f"{what} code length", limits.MAX_CODE_BYTES), f"{what} code")
        return Embedding(camera, track, reason, class_id, conf, box, codec, code)
    if mtype in (MessageType.TRACK_END, MessageType.TRACK_SUMMARY):
        cam, camera = _camera(r, cameras, what)
        track = r.uvarint(f"{what} track id", 2**32 - 1)
        first = ts + r.svarint(f"{what} first seen") * unit
        last = first + r.uvarint(f"{what} duration") * unit
        if not 0 <= first <= last <= limits.MAX_TS_US:
            raise DecodeError(f"{what}: track times [{first}, {last}] us out of range")
        frames = r.uvarint(f"{what} frames", 2**32 - 1)
        votes = _histogram(r, f"{what} class votes")
        if mtype is MessageType.TRACK_SUMMARY:
            final = r.byte(f"{what} final")
            if final > 1:
                raise DecodeError(f"{what}: final flag {final}, expected 0 or 1")
            raw = r.take(r.uvarint(f"{what} path length", limits.MAX_PATH_BYTES), f"{what} path")
            summary_path = SUMMARY_PATH.unpack(raw, "TrackSummary.path")
            return TrackSummary(
                camera, track, first, last, frames, votes, bool(final), summary_path
            )
        n = r.uvarint(f"{what} path length", limits.MAX_PATH_POINTS)
        path = tuple(boxes.read(r, cam, track, f"{what} path box {j}") for j in range(n))
        return TrackEnd(camera, track, first, last, frames, votes, path)
    if mtype is MessageType.FRAME_COUNTS:
        _, camera = _camera(r, cameras, what)
        return FrameCounts(camera, _histogram(r, f"{what} counts"))
    raise DecodeError(f"{what}: {mtype.name} has no bundle layout")  # pragma: no cover
