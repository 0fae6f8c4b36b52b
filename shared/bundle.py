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
from typing import Any, Final

import msgpack

from shared import limits
from shared.codec import BUNDLE_FRAME_TYPE, FLAG_ZSTD, MAGIC, PREFIX_BYTES, decode
from shared.compression import Compressor
from shared.errors import DecodeError, EncodeError, FrameTooLarge, InvalidMessage, VersionMismatch
from shared.geometry import BOX_UNITS, Box
from shared.messages import (
    MESSAGE_TYPES,
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
from shared.schema import pack_record, unpack_record, wire_fields
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
_PREFIX: Final = struct.Struct("<2sBBB")
_CODEC: Final = struct.Struct("<I")
_CONF_STEPS: Final = 255
#: A TrackSummary's path keeps its own compact coding (:mod:`shared.pathwire`), carried as is.
_SUMMARY_PATH: Final = next(f for f in wire_fields(TrackSummary) if f.name == "path").metadata[
    "wire"
]

_compressor: Compressor | None = None


def _default_compressor() -> Compressor:
    global _compressor
    if _compressor is None:
        _compressor = Compressor()
    return _compressor


# ---------------------------------------------------------------------- quantisation


def grid_units(value: float, box_step: int) -> int:
    """A normalised coordinate as grid steps of ``box_step`` / 65,535 (rounded half up)."""
    return (round(value * BOX_UNITS) + box_step // 2) // box_step


def _grid_max(box_step: int) -> int:
    return (BOX_UNITS + box_step // 2) // box_step


def _from_grid(q: int, box_step: int) -> float:
    return min(q * box_step, BOX_UNITS) / BOX_UNITS


def quantise_box(box: Box, box_step: int) -> Box:
    """``box`` as a bundle of grid ``box_step`` delivers it."""
    x1, y1, x2, y2 = (grid_units(v, box_step) for v in (box.x1, box.y1, box.x2, box.y2))
    return Box(*(_from_grid(q, box_step) for q in (x1, y1, x2, y2)))


def quantise_confidence(confidence: float) -> float:
    """A confidence as a bundle delivers it (one byte, k / 255)."""
    return round(confidence * _CONF_STEPS) / _CONF_STEPS


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


# ---------------------------------------------------------------------- encoding


class _Boxes:
    """Each tracked object's last box in this bundle, in grid steps (x1, y1, w, h): the
    encoder and the decoder update it identically, so a box is coded as the change."""

    def __init__(self, box_step: int) -> None:
        self.step = box_step
        self.qmax = _grid_max(box_step)
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
        return Box(
            _from_grid(x1, s), _from_grid(y1, s), _from_grid(x1 + w, s), _from_grid(y1 + h, s)
        )


def _conf_byte(confidence: float) -> int:
    return round(confidence * _CONF_STEPS)


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
    boxes = _Boxes(box_step)
    seq, ts = envelopes[0].seq, base
    for env in envelopes:
        out.append(int(env.type))
        write_svarint(out, env.seq - seq)
        write_svarint(out, (env.capture_ts_us - ts) // unit)
        seq, ts = env.seq, env.capture_ts_us
        _write_message(out, env, cameras, boxes, unit)
    return _frame(bytes(out), compressor)


def _write_message(
    out: bytearray, env: Envelope, cameras: dict[str, int], boxes: _Boxes, unit: int
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
        path: bytes = _SUMMARY_PATH.pack(m.path)
        write_uvarint(out, len(path))
        out += path
    else:  # a bundled type without a compact layout: its msgpack record
        body = msgpack.packb(pack_record(m), use_bin_type=True, use_single_float=True)
        write_uvarint(out, len(body))
        out += body


def _frame(body: bytes, compressor: Compressor | None) -> bytes:
    if len(body) > limits.MAX_BODY_BYTES:
        raise EncodeError(
            f"bundle body of {len(body)} bytes exceeds max of {limits.MAX_BODY_BYTES}"
        )
    flags = 0
    packed = (compressor or _default_compressor()).compress(body)
    if packed is not None:
        body, flags = packed, FLAG_ZSTD
    frame = _PREFIX.pack(MAGIC, limits.PROTOCOL_VERSION, BUNDLE_TYPE, flags) + body
    if len(frame) > limits.MAX_FRAME_BYTES:
        raise EncodeError(f"bundle of {len(frame)} bytes exceeds max of {limits.MAX_FRAME_BYTES}")
    return frame


# ---------------------------------------------------------------------- decoding


def is_bundle(frame: bytes) -> bool:
    """Whether ``frame`` claims to be a bundle (its prefix only; decoding checks the rest)."""
    return len(frame) > PREFIX_BYTES and frame[:2] == MAGIC and frame[3] == BUNDLE_TYPE


def decode_frame(frame: bytes, compressor: Compressor | None = None) -> list[Envelope]:
    """The messages of one frame: a bundle's, in order, or a single frame's one."""
    if is_bundle(frame):
        return decode_bundle(frame, compressor)
    return [decode(frame, compressor)]


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
        body = (compressor or _default_compressor()).decompress(body)
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
    boxes = _Boxes(box_step)
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
    return r.byte(what) / _CONF_STEPS


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
    boxes: _Boxes,
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
            summary_path = _SUMMARY_PATH.unpack(raw, "TrackSummary.path")
            return TrackSummary(
                camera, track, first, last, frames, votes, bool(final), summary_path
            )
        n = r.uvarint(f"{what} path length", limits.MAX_PATH_POINTS)
        path = tuple(boxes.read(r, cam, track, f"{what} path box {j}") for j in range(n))
        return TrackEnd(camera, track, first, last, frames, votes, path)
    if mtype is MessageType.FRAME_COUNTS:
        _, camera = _camera(r, cameras, what)
        return FrameCounts(camera, _histogram(r, f"{what} counts"))
    return _read_record(r, mtype, what)  # pragma: no cover - every bundled type has a layout


def _read_record(r: Reader, mtype: MessageType, what: str) -> Message:
    raw = r.take(r.uvarint(f"{what} length", limits.MAX_BODY_BYTES), what)
    try:
        items: Any = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=False,
            max_str_len=limits.MSGPACK_MAX_STR_BYTES,
            max_bin_len=limits.MSGPACK_MAX_BIN_BYTES,
            max_array_len=limits.MSGPACK_MAX_ARRAY_ITEMS,
            max_map_len=limits.MSGPACK_MAX_MAP_ITEMS,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"{what}: malformed msgpack record: {exc}") from None
    if not isinstance(items, list):
        raise DecodeError(f"{what}: record must be a msgpack array")
    cls = MESSAGE_TYPES[mtype]
    return unpack_record(cls, items, cls.__name__)
