"""Frames: one message in its envelope, as bytes.

Layout (all multi-byte integers little-endian)::

    offset  size  field
    0       2     magic b"SC"
    2       1     protocol version (``limits.PROTOCOL_VERSION``)
    3       1     message type (:class:`shared.messages.MessageType`)
    4       1     flags: bit 0 = body is one zstd frame; other bits must be 0
    5       ...   body: msgpack array [edge_id, seq, capture_ts_us, send_minus_capture_us,
                  *message fields in declaration order], possibly zstd-compressed

Type 32 is not a message but a bundle of data messages, decoded by :mod:`shared.bundle`.

A frame is at most ``MAX_FRAME_BYTES`` (64 KiB, aiortc's data-channel message cap) and its body
at most ``MAX_BODY_BYTES`` after decompression. :func:`decode` raises :class:`DecodeError` (or a
subclass) for every malformed input and nothing else.
"""

from __future__ import annotations

import struct
import threading
from typing import Any, Final

import msgpack

from shared import limits
from shared.compression import Compressor
from shared.errors import DecodeError, EncodeError, FrameTooLarge, InvalidMessage, VersionMismatch
from shared.messages import MAX_TS_DELTA_US, MESSAGE_TYPES, Envelope, MessageType
from shared.schema import pack_record, unpack_record, wire_fields

MAGIC: Final = b"SC"
FLAG_ZSTD: Final = 0x01
_KNOWN_FLAGS: Final = FLAG_ZSTD
_PREFIX: Final = struct.Struct("<2sBBB")
PREFIX_BYTES: Final = _PREFIX.size
_HEADER_FIELDS: Final = 4
#: The type byte of a bundle frame (:mod:`shared.bundle`): many messages, one header.
BUNDLE_FRAME_TYPE: Final = 32

_local = threading.local()


def _default_compressor() -> Compressor:
    comp: Compressor | None = getattr(_local, "compressor", None)
    if comp is None:
        comp = _local.compressor = Compressor()
    return comp


def encode(envelope: Envelope, compressor: Compressor | None = None) -> bytes:
    """Serialise one enveloped message to a frame.

    Raises :class:`EncodeError` if the frame would exceed ``MAX_FRAME_BYTES``.
    """
    delta = envelope.send_ts_us - envelope.capture_ts_us
    if abs(delta) > MAX_TS_DELTA_US:
        raise EncodeError(f"send and capture timestamps are {delta} us apart")
    items: list[Any] = [envelope.edge_id, envelope.seq, envelope.capture_ts_us, delta]
    items.extend(pack_record(envelope.message))
    body: bytes = msgpack.packb(items, use_bin_type=True, use_single_float=True)
    if len(body) > limits.MAX_BODY_BYTES:
        raise EncodeError(f"body of {len(body)} bytes exceeds max of {limits.MAX_BODY_BYTES}")
    flags = 0
    packed = (compressor or _default_compressor()).compress(body)
    if packed is not None:
        body, flags = packed, FLAG_ZSTD
    frame = _PREFIX.pack(MAGIC, limits.PROTOCOL_VERSION, int(envelope.type), flags) + body
    if len(frame) > limits.MAX_FRAME_BYTES:
        raise EncodeError(f"frame of {len(frame)} bytes exceeds max of {limits.MAX_FRAME_BYTES}")
    return frame


def peek_type(frame: bytes) -> MessageType:
    """The message type of a frame, checking only its prefix."""
    return _check_prefix(frame)[0]


def _check_prefix(frame: bytes) -> tuple[MessageType, int]:
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(frame).__name__}")
    if len(frame) > limits.MAX_FRAME_BYTES:
        raise FrameTooLarge("frame", len(frame), limits.MAX_FRAME_BYTES)
    if len(frame) < PREFIX_BYTES + 1:
        raise DecodeError(f"truncated frame: {len(frame)} bytes, need at least {PREFIX_BYTES + 1}")
    magic, version, type_byte, flags = _PREFIX.unpack_from(frame)
    if magic != MAGIC:
        raise DecodeError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version not in limits.SUPPORTED_VERSIONS:
        raise VersionMismatch(version, limits.SUPPORTED_VERSIONS)
    try:
        mtype = MessageType(type_byte)
    except ValueError:
        if type_byte == BUNDLE_FRAME_TYPE:
            raise DecodeError(
                "a bundle frame (type 32) holds several messages: decode it with "
                "shared.bundle.decode_frame"
            ) from None
        raise DecodeError(f"unknown message type {type_byte}") from None
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError(f"unknown flag bits {flags & ~_KNOWN_FLAGS:#04x}")
    return mtype, flags


def decode(frame: bytes, compressor: Compressor | None = None) -> Envelope:
    """Parse one frame; raises :class:`DecodeError` with a precise reason for any bad input."""
    mtype, flags = _check_prefix(frame)
    body = bytes(frame[PREFIX_BYTES:])
    if flags & FLAG_ZSTD:
        body = (compressor or _default_compressor()).decompress(body)
    try:
        items = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=False,
            max_str_len=limits.MSGPACK_MAX_STR_BYTES,
            max_bin_len=limits.MSGPACK_MAX_BIN_BYTES,
            max_array_len=limits.MSGPACK_MAX_ARRAY_ITEMS,
            max_map_len=limits.MSGPACK_MAX_MAP_ITEMS,
            max_ext_len=0,
        )
    except msgpack.ExtraData:
        raise DecodeError("trailing bytes after the msgpack body") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # Covers truncated data, malformed msgpack, invalid UTF-8, over-limit lengths and
        # over-deep nesting (all ValueError subclasses or msgpack's own errors).
        raise DecodeError(f"malformed msgpack body: {exc}") from None
    cls = MESSAGE_TYPES[mtype]
    name = cls.__name__
    if not isinstance(items, list):
        raise DecodeError(f"body must be a msgpack array, got {type(items).__name__}")
    expected = _HEADER_FIELDS + len(wire_fields(cls))
    if len(items) != expected:
        raise DecodeError(f"{name} body has {len(items)} fields, expected {expected}")
    edge_id, seq, capture_ts, delta = items[:_HEADER_FIELDS]
    try:
        message = unpack_record(cls, items[_HEADER_FIELDS:], name)
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise InvalidMessage("Envelope.send_ts_us", "delta must be an integer")
        if isinstance(capture_ts, bool) or not isinstance(capture_ts, int):
            raise InvalidMessage("Envelope.capture_ts_us", "expected an integer")
        return Envelope(edge_id, seq, capture_ts, capture_ts + delta, message)
    except InvalidMessage as exc:
        raise DecodeError(exc.reason, field=exc.field) from None


#: Message types whose layout ``limits.SAME_DATA_LAYOUT`` versions share with this one.
_DATA_TYPES: Final = frozenset(
    {MessageType.DETECTIONS, MessageType.EMBEDDING, MessageType.TRACK_END, MessageType.FRAME_COUNTS}
)


def restamp(frame: bytes) -> bytes:
    """``frame`` with the current version byte, when it is a data message of an earlier
    version laid out as this one's (``limits.SAME_DATA_LAYOUT``); any other frame unchanged.

    An edge upgraded with frames still in its spool sends them under the current version:
    without this, the cloud would refuse the whole session for the old version byte."""
    if (
        len(frame) > PREFIX_BYTES
        and frame[:2] == MAGIC
        and frame[2] in limits.SAME_DATA_LAYOUT
        and frame[3] in _DATA_TYPES
    ):
        return frame[:2] + bytes([limits.PROTOCOL_VERSION]) + frame[3:]
    return frame
