"""Frame decoding: golden fixtures, and one precise DecodeError for every kind of bad input."""

from __future__ import annotations

import struct

import msgpack
import pytest
import zstandard

from shared import limits
from shared.codec import MAGIC, decode, encode, peek_type
from shared.compression import Compressor, train_dictionary
from shared.errors import DecodeError, FrameTooLarge, VersionMismatch
from shared.messages import Ack, Envelope, FrameCounts, MessageType
from tests.shared.golden import GOLDEN_DIR, RAW, SAMPLES


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_golden_fixture(name: str) -> None:
    golden = (GOLDEN_DIR / f"{name}.bin").read_bytes()
    assert encode(SAMPLES[name], RAW) == golden, "wire format changed: see tests/shared/golden.py"
    assert decode(golden) == SAMPLES[name]


def test_golden_compressed_fixture() -> None:
    golden = (GOLDEN_DIR / "detections_zstd.bin").read_bytes()
    assert golden[4] & 1, "fixture should be a compressed frame"
    assert decode(golden) == SAMPLES["detections_many"]


def _frame(
    mtype: int, items: object, *, version: int = limits.PROTOCOL_VERSION, flags: int = 0
) -> bytes:
    body = msgpack.packb(items, use_bin_type=True)
    return MAGIC + bytes([version, mtype, flags]) + body


ACK = MessageType.ACK


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "truncated frame: 0 bytes"),
        (b"SC\x04\x07", "truncated frame: 4 bytes"),
        (b"XX\x02\x07\x00\x90", "bad magic"),
        (b"SC\x04\x63\x00\x90", "unknown message type 99"),
        (b"SC\x04\x07\x80\x90", "unknown flag bits 0x80"),
        (_frame(ACK, ["e", 1, 0, 0]), "Ack body has 4 fields, expected 6"),
        (_frame(ACK, {"seq": 1}), "body must be a msgpack array, got dict"),
        (_frame(ACK, ["e", 1, 0, 0, "1", b""]), "Ack.seq: expected an integer, got str"),
        (_frame(ACK, ["e", 1, 0, 0, -1, b""]), "Ack.seq: -1 is outside"),
        (_frame(ACK, ["bad id!", 1, 0, 0, 1, b""]), "Envelope.edge_id"),
        (_frame(ACK, ["e", 1, 0, 1.5, 1, b""]), "delta must be an integer"),
        (_frame(ACK, ["e", 1, 0, 0, 1, b"\x00" * 12]), "not 0..2048 items"),
        (_frame(ACK, ["e", 1, 0, 0, 1, (5).to_bytes(8, "little")]), "(first, last) pairs"),
        (
            _frame(MessageType.HEARTBEAT, ["e", 0, 0, 0, 1, float("nan"), 0, "", 0, {}]),
            "NaN is not allowed",
        ),
        (
            _frame(MessageType.HEARTBEAT, ["e", 0, 0, 0, 1, float("inf"), 0, "", 0, {}]),
            "must be finite",
        ),
        (
            _frame(MessageType.HEARTBEAT, ["e", 0, 0, 0, 1, 5, 0, "", 0, {}]),
            "expected a float, got int",
        ),
        (
            _frame(MessageType.FRAME_COUNTS, ["e", 0, 0, 0, "cam", {"car": 1}]),
            "FrameCounts.counts.key: expected an integer, got str",
        ),
        (
            _frame(MessageType.DETECTIONS, ["e", 0, 0, 0, "cam", b"\x00" * 9, b"", b"", b""]),
            "not a whole number of boxes",
        ),
        (_frame(ACK, ["e", 1, 0, 0, 1, b""]) + b"\x00", "trailing bytes"),
        (_frame(ACK, ["e", 1, 0, 0, 1, b""])[:-1], "malformed msgpack body"),
        (MAGIC + b"\x04\x07\x00\xc1", "malformed msgpack body"),  # 0xc1 is never used
        (MAGIC + b"\x04\x07\x00" + b"\x91" * 5000 + b"\x01", "malformed msgpack body"),
        (MAGIC + b"\x04\x07\x00\xa3\xff\xfe\xfd", "malformed msgpack body"),  # bad UTF-8
        (MAGIC + b"\x04\x07\x00\xd4\x01\x00", "malformed msgpack body"),  # ext type
        (MAGIC + b"\x04\x07\x01garbage", "corrupt zstd frame header"),
    ],
)
def test_bad_input_gives_precise_decode_error(frame: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(frame)
    assert message in str(info.value)


def test_wrong_version_is_version_mismatch() -> None:
    with pytest.raises(VersionMismatch) as info:
        decode(_frame(ACK, ["e", 1, 0, 0, 1, b""], version=9))
    assert info.value.got == 9
    assert info.value.supported == (limits.PROTOCOL_VERSION,)


def test_oversize_frame_rejected_before_parsing() -> None:
    with pytest.raises(FrameTooLarge) as info:
        decode(b"SC" + b"\x00" * limits.MAX_FRAME_BYTES)
    assert "65538 bytes exceeds max of 65536" in str(info.value)


def test_decompression_bomb_is_refused() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\x00" * (limits.MAX_BODY_BYTES + 1))
    assert len(bomb) < 200
    with pytest.raises(FrameTooLarge, match="decompressed body of 262145 bytes"):
        decode(MAGIC + bytes([limits.PROTOCOL_VERSION, ACK, 1]) + bomb)


def test_zstd_without_content_size_is_refused() -> None:
    stream = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    body = stream.compress(msgpack.packb(["e", 1, 0, 0, 1, b""])) + stream.flush()
    with pytest.raises(DecodeError, match="does not declare its content size"):
        decode(MAGIC + bytes([limits.PROTOCOL_VERSION, ACK, 1]) + body)


def test_zstd_with_trailing_data_is_refused() -> None:
    body = zstandard.ZstdCompressor().compress(msgpack.packb(["e", 1, 0, 0, 1, b""]))
    with pytest.raises(DecodeError, match="corrupt zstd body"):
        decode(MAGIC + bytes([limits.PROTOCOL_VERSION, ACK, 1]) + body + b"tail")


def test_dictionary_compression_round_trip_and_unknown_dictionary() -> None:
    samples = [
        encode(
            Envelope(
                "edge-01", i, 10**15 + i, 10**15 + i, FrameCounts("cam-01", {2: i % 7, 0: i % 3})
            ),
            RAW,
        )[5:]
        for i in range(2000)
    ]
    dictionary = train_dictionary(samples, size=2048)
    sender = Compressor(dictionary=dictionary, min_bytes=8)
    env = Envelope("edge-01", 5000, 10**15, 10**15 + 7, FrameCounts("cam-01", {2: 3, 0: 1}))
    frame = encode(env, sender)
    assert frame[4] & 1, "a trained dictionary should make this small body compress"
    assert len(frame) < len(encode(env, RAW))
    assert decode(frame, Compressor(known=[dictionary])) == env
    with pytest.raises(DecodeError, match=f"zstd dictionary {dictionary.dict_id} is not known"):
        decode(frame)


def test_peek_type_reads_only_the_prefix() -> None:
    frame = encode(Envelope("e", 1, 0, 0, Ack(3, ())))
    assert peek_type(frame) is MessageType.ACK
    assert peek_type(frame[:6]) is MessageType.ACK


def test_non_bytes_input() -> None:
    with pytest.raises(DecodeError, match="expected bytes, got str"):
        decode("SC\x01")  # type: ignore[arg-type]


def test_struct_layout_of_prefix() -> None:
    frame = encode(Envelope("e", 1, 0, 0, Ack(3, ())), RAW)
    magic, version, mtype, flags = struct.unpack_from("<2sBBB", frame)
    assert (magic, version, mtype, flags) == (b"SC", 4, 7, 0)
