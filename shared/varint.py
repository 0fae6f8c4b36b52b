"""Unsigned LEB128 varints and zigzag-coded signed ones, with bounded reads.

The one LEB128 coder of the wire: bundle frames (:mod:`shared.bundle`, through
:class:`Reader`), where most numbers are small deltas (a seq that grows by one, a box that
moved a few grid steps); the length prefixes of batches and message files
(:mod:`shared.framing`, at most 3 bytes); track paths (:mod:`shared.pathwire`, at most 5).
:func:`read_uvarint` never reads more than its ``max_bytes`` for one number (at most
``MAX_VARINT_BYTES``, a 64-bit value), so hostile input costs bounded time. Its faults are one
:class:`~shared.errors.VarintError` with their offsets; each decoder maps that to its own error
(a bundle's :class:`~shared.errors.DecodeError`, a path's
:class:`~shared.errors.InvalidMessage`) in its own words.
"""

from __future__ import annotations

from typing import Final

from shared.errors import DecodeError, VarintError

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


def read_uvarint(
    buf: bytes | memoryview, pos: int, max_bytes: int = MAX_VARINT_BYTES
) -> tuple[int, int]:
    """The unsigned varint at ``buf[pos]`` and the offset just after it.

    Reads at most ``max_bytes``; :class:`VarintError` if ``buf`` ends first or the varint is
    longer. The value is not range-checked: 10 bytes may hold up to 70 bits.
    """
    value = shift = 0
    size = len(buf)
    for i in range(pos, pos + max_bytes):
        if i >= size:
            raise VarintError(start=pos, stop=i, max_bytes=max_bytes, truncated=True)
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise VarintError(start=pos, stop=pos + max_bytes, max_bytes=max_bytes, truncated=False)


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
        pos = self.pos
        if pos < len(self.buf) and self.buf[pos] < 0x80:  # most bundle numbers: one byte, and
            value = self.buf[pos]  # skipping the call keeps decoding as fast as it was
            self.pos = pos + 1
            if value > high:
                raise DecodeError(f"{what} {value} at offset {pos} exceeds max of {high}")
            return value
        try:
            value, self.pos = read_uvarint(self.buf, pos)
        except VarintError as exc:
            if exc.truncated:
                raise DecodeError(
                    f"truncated bundle: {what} at offset {pos} is cut short"
                ) from None
            raise DecodeError(
                f"{what} at offset {pos} is a varint longer than {MAX_VARINT_BYTES} bytes"
            ) from None
        if value > high:
            raise DecodeError(f"{what} {value} at offset {pos} exceeds max of {high}")
        return value

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
