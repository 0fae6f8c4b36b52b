"""Unsigned LEB128 varints and zigzag-coded signed ones, with bounded reads.

Used by bundle frames (:mod:`shared.bundle`), where most numbers are small deltas: a seq that
grows by one, a box that moved a few grid steps. A reader never reads more than
``MAX_VARINT_BYTES`` for one number (a 64-bit value), so hostile input costs bounded time.
"""

from __future__ import annotations

from typing import Final

from shared.errors import DecodeError

#: Bytes of the longest varint: 10 x 7 bits hold any 64-bit value.
MAX_VARINT_BYTES: Final = 10
_MAX_U64: Final = 2**64 - 1


def write_uvarint(out: bytearray, n: int) -> None:
    """Append ``n`` (0 <= n < 2**64) as an unsigned LEB128 varint."""
    if not 0 <= n <= _MAX_U64:
        raise ValueError(f"{n} does not fit an unsigned 64-bit varint")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def zigzag(n: int) -> int:
    """A signed integer as an unsigned one: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    return 2 * n if n >= 0 else -2 * n - 1


def unzigzag(z: int) -> int:
    return z >> 1 if not z & 1 else -((z + 1) >> 1)


def write_svarint(out: bytearray, n: int) -> None:
    """Append a signed integer (|n| < 2**63) as a zigzag varint."""
    write_uvarint(out, zigzag(n))


def uvarint_size(n: int) -> int:
    """Bytes of ``n`` as an unsigned varint."""
    return max(1, (n.bit_length() + 6) // 7)


class Reader:
    """Reads varints, bytes and strings from a body; :class:`DecodeError` on anything short,
    overlong or out of range, naming ``what`` was being read and its offset."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.buf) - self.pos

    def uvarint(self, what: str, high: int = _MAX_U64) -> int:
        buf, pos = self.buf, self.pos
        value = shift = 0
        for i in range(MAX_VARINT_BYTES):
            if pos + i >= len(buf):
                raise DecodeError(f"truncated bundle: {what} at offset {pos} is cut short")
            byte = buf[pos + i]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                self.pos = pos + i + 1
                if value > high:
                    raise DecodeError(f"{what} {value} at offset {pos} exceeds max of {high}")
                return value
        raise DecodeError(
            f"{what} at offset {pos} is a varint longer than {MAX_VARINT_BYTES} bytes"
        )

    def svarint(self, what: str) -> int:
        return unzigzag(self.uvarint(what))

    def byte(self, what: str) -> int:
        if self.pos >= len(self.buf):
            raise DecodeError(f"truncated bundle: {what} at offset {self.pos} is missing")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def take(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise DecodeError(
                f"truncated bundle: {what} at offset {self.pos} needs {n} bytes, {self.left} left"
            )
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def text(self, what: str, max_chars: int) -> str:
        n = self.uvarint(f"{what} length", 4 * max_chars)
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{what} is not UTF-8: {exc.reason}") from None
