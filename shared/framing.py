"""Several frames in one buffer: data-channel batches and recorded message files.

Both use the same record layout: an unsigned LEB128 varint length, then that many bytes of one
frame (see :mod:`shared.codec`). A batch starts with ``BATCH_MAGIC`` and must fit one
data-channel message (``MAX_FRAME_BYTES``); a message file starts with ``FILE_MAGIC`` and may
be any length (it is read as a stream).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO, Final

from shared import limits
from shared.errors import DecodeError, EncodeError, FrameTooLarge, VarintError
from shared.varint import read_uvarint, uvarint_size, write_uvarint

BATCH_MAGIC: Final = b"SB\x01"
FILE_MAGIC: Final = b"SEMCOMF\x01"
MAX_BATCH_FRAMES: Final = 4_096
#: 3 bytes of 7 bits cover MAX_FRAME_BYTES (65536 < 2**21)
_MAX_LENGTH_BYTES: Final = 3


def varint_size(n: int) -> int:
    """Bytes of the length prefix of an ``n``-byte frame."""
    return uvarint_size(n)


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    try:
        return read_uvarint(buf, pos, _MAX_LENGTH_BYTES)
    except VarintError as exc:
        if exc.truncated:
            raise DecodeError(f"truncated length at offset {pos}") from None
        raise DecodeError(f"length at offset {pos} is longer than 3 bytes") from None


def record(frame: bytes) -> bytes:
    """One frame with its length prefix."""
    if len(frame) > limits.MAX_FRAME_BYTES:
        raise EncodeError(f"frame of {len(frame)} bytes exceeds max of {limits.MAX_FRAME_BYTES}")
    out = bytearray()
    write_uvarint(out, len(frame))
    out += frame
    return bytes(out)


def pack_batch(frames: Iterable[bytes]) -> bytes:
    """Join frames into one batch; :class:`EncodeError` if it exceeds ``MAX_FRAME_BYTES``."""
    out = bytearray(BATCH_MAGIC)
    count = 0
    for frame in frames:
        out += record(frame)
        count += 1
    if count > MAX_BATCH_FRAMES:
        raise EncodeError(f"batch of {count} frames exceeds max of {MAX_BATCH_FRAMES}")
    if len(out) > limits.MAX_FRAME_BYTES:
        raise EncodeError(f"batch of {len(out)} bytes exceeds max of {limits.MAX_FRAME_BYTES}")
    return bytes(out)


def batch_overhead(frame_sizes: Iterable[int]) -> int:
    """Bytes a batch of frames of these sizes takes (for packing to a budget)."""
    return len(BATCH_MAGIC) + sum(varint_size(n) + n for n in frame_sizes)


def unpack_batch(data: bytes) -> list[bytes]:
    """Split a batch into its frames (each still to be decoded); :class:`DecodeError` if bad."""
    if len(data) > limits.MAX_FRAME_BYTES:
        raise FrameTooLarge("batch", len(data), limits.MAX_FRAME_BYTES)
    if not data.startswith(BATCH_MAGIC):
        raise DecodeError("not a batch: bad magic")
    view = memoryview(data)
    frames: list[bytes] = []
    pos = len(BATCH_MAGIC)
    while pos < len(view):
        size, pos = _read_varint(view, pos)
        if size == 0:
            raise DecodeError(f"empty frame at offset {pos}")
        if pos + size > len(view):
            raise DecodeError(f"truncated frame at offset {pos}: need {size} bytes")
        frames.append(bytes(view[pos : pos + size]))
        pos += size
    return frames


class FrameWriter:
    """Appends frames to a message file (``semcom edge run --out``); flush() makes them durable."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        if stream.tell() == 0:
            stream.write(FILE_MAGIC)

    def write(self, frame: bytes) -> int:
        rec = record(frame)
        self._stream.write(rec)
        return len(rec)

    def flush(self) -> None:
        self._stream.flush()


def read_frames(stream: BinaryIO) -> Iterator[bytes]:
    """Yield the frames of a message file; :class:`DecodeError` on a bad header or a cut record.

    A file cut inside its last record (a crash mid-write) raises after yielding every whole one.
    """
    head = stream.read(len(FILE_MAGIC))
    if head != FILE_MAGIC:
        raise DecodeError(f"not a semcom message file: header {head!r}")
    offset = len(FILE_MAGIC)
    while True:
        prefix = bytearray()
        while True:
            byte = stream.read(1)
            if not byte:
                if prefix:
                    raise DecodeError(f"file ends inside a length at offset {offset}")
                return
            prefix += byte
            if not byte[0] & 0x80:
                break
            if len(prefix) == _MAX_LENGTH_BYTES:
                raise DecodeError(f"length at offset {offset} is longer than 3 bytes")
        size, _ = _read_varint(bytes(prefix), 0)
        if size == 0 or size > limits.MAX_FRAME_BYTES:
            raise DecodeError(f"bad frame length {size} at offset {offset}")
        frame = stream.read(size)
        if len(frame) != size:
            raise DecodeError(f"file ends inside a frame at offset {offset}")
        offset += len(prefix) + size
        yield frame
