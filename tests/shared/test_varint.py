"""The one varint reader and the exact errors each wire decoder maps its faults to.

Batches (:mod:`shared.framing`), bundles (:class:`shared.varint.Reader`) and track paths
(:mod:`shared.pathwire`) all read LEB128 through :func:`shared.varint.read_uvarint`; each keeps
the error type and wording it had with its own reader, pinned here byte for byte.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import DecodeError, InvalidMessage, VarintError
from shared.framing import BATCH_MAGIC, FILE_MAGIC, read_frames, unpack_batch
from shared.pathwire import PathType
from shared.varint import MAX_VARINT_BYTES, Reader, read_uvarint, write_uvarint

_U64 = 2**64 - 1


def _decode_error(call: object, *args: object) -> DecodeError:
    assert callable(call)
    with pytest.raises(DecodeError) as err:
        call(*args)
    assert type(err.value) is DecodeError
    return err.value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (BATCH_MAGIC + b"\x80", "truncated length at offset 3"),
        (BATCH_MAGIC + b"\x01A\xff\xff", "truncated length at offset 5"),
        (BATCH_MAGIC + b"\xff\xff\xff\x01", "length at offset 3 is longer than 3 bytes"),
        (BATCH_MAGIC + b"\x00", "empty frame at offset 4"),
        (BATCH_MAGIC + b"\x81\x01", "truncated frame at offset 5: need 129 bytes"),
    ],
)
def test_batch_length_faults_keep_their_messages(data: bytes, message: str) -> None:
    assert str(_decode_error(unpack_batch, data)) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (FILE_MAGIC + b"\x80", "file ends inside a length at offset 8"),
        (FILE_MAGIC + b"\x01A\xff\xff\xff", "length at offset 10 is longer than 3 bytes"),
        (FILE_MAGIC + b"\x80\x00", "bad frame length 0 at offset 8"),
        (FILE_MAGIC + b"\x80\x80\x7f", "bad frame length 2080768 at offset 8"),
    ],
)
def test_message_file_length_faults_keep_their_messages(data: bytes, message: str) -> None:
    assert str(_decode_error(lambda: list(read_frames(io.BytesIO(data))))) == message


def test_batch_frames_of_every_length_prefix_size_round_trip() -> None:
    frames = [b"a", b"b" * 127, b"c" * 128, b"d" * 16_383, b"e" * 16_384]
    batch = BATCH_MAGIC + b"".join(_prefixed(f) for f in frames)
    assert unpack_batch(batch) == frames
    assert list(read_frames(io.BytesIO(FILE_MAGIC + batch[len(BATCH_MAGIC) :]))) == frames


def _prefixed(frame: bytes) -> bytes:
    out = bytearray()
    write_uvarint(out, len(frame))
    return bytes(out + frame)


@pytest.mark.parametrize(
    ("data", "start", "high", "message"),
    [
        (b"\x80", 0, _U64, "truncated bundle: seq at offset 0 is cut short"),
        (b"\x05\x05\xff", 2, _U64, "truncated bundle: seq at offset 2 is cut short"),
        (b"\xff" * 11, 0, _U64, "seq at offset 0 is a varint longer than 10 bytes"),
        (b"\x00" + b"\x80" * 10, 1, _U64, "seq at offset 1 is a varint longer than 10 bytes"),
        (b"\xac\x02", 0, 299, "seq 300 at offset 0 exceeds max of 299"),
        (
            b"\xff" * 9 + b"\x7f",
            0,
            _U64,
            f"seq {2**70 - 1} at offset 0 exceeds max of {_U64}",
        ),
    ],
)
def test_bundle_reader_faults_keep_their_messages(
    data: bytes, start: int, high: int, message: str
) -> None:
    reader = Reader(data)
    reader.pos = start
    assert str(_decode_error(reader.uvarint, "seq", high)) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "ends inside the grid at byte 0"),
        (b"\x90", "ends inside the grid at byte 1"),
        (bytes([16, 1, 0, 0, 0, 0x80]), "ends inside point 0's width at byte 6"),
        (
            bytes([16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            "the point count at byte 6 is longer than 5 bytes",
        ),
        (
            bytes([16, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
            "point 0's time at byte 7 is longer than 5 bytes",
        ),
    ],
)
def test_path_faults_keep_their_messages(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidMessage) as err:
        PathType().unpack(raw, "TrackSummary.path")
    assert type(err.value) is InvalidMessage
    assert err.value.field == "TrackSummary.path"
    assert err.value.reason == message


@given(st.integers(min_value=0, max_value=_U64), st.binary(max_size=4))
def test_bundle_reader_round_trips_every_u64(n: int, tail: bytes) -> None:
    out = bytearray(b"\x07")
    write_uvarint(out, n)
    reader = Reader(bytes(out) + tail)
    reader.pos = 1
    assert reader.uvarint("n") == n
    assert reader.left == len(tail)
    assert len(out) - 1 <= MAX_VARINT_BYTES


@pytest.mark.parametrize(
    ("data", "pos", "max_bytes", "start", "stop", "truncated"),
    [
        (b"", 0, 10, 0, 0, True),
        (b"\x01\x80\x80", 1, 3, 1, 3, True),
        (b"\x01\x80\x80\x80\x00", 1, 3, 1, 4, False),
        (b"\xff" * 11, 0, 10, 0, 10, False),
    ],
)
def test_read_uvarint_faults_say_where(
    data: bytes, pos: int, max_bytes: int, start: int, stop: int, truncated: bool
) -> None:
    with pytest.raises(VarintError) as err:
        read_uvarint(data, pos, max_bytes)
    assert (err.value.start, err.value.stop, err.value.truncated) == (start, stop, truncated)
    assert err.value.max_bytes == max_bytes
    assert isinstance(err.value, DecodeError)


def test_read_uvarint_stops_after_the_last_byte() -> None:
    assert read_uvarint(b"\x00\xac\x02\x7f", 1) == (300, 3)
    assert read_uvarint(memoryview(b"\x7f"), 0, 1) == (127, 1)
