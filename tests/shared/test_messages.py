"""Round trips of every message type, and the validation rules of message fields."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import limits
from shared.codec import decode, encode
from shared.errors import InvalidMessage
from shared.geometry import Box
from shared.messages import (
    MESSAGE_TYPES,
    Ack,
    Detections,
    Embedding,
    EmitReason,
    Envelope,
    FrameCounts,
    Heartbeat,
    TrackEnd,
)
from tests.strategies import envelopes, records


@settings(max_examples=300)
@given(envelopes())
def test_every_message_round_trips(env: Envelope) -> None:
    assert decode(encode(env)) == env


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=lambda c: c.__name__)
@settings(max_examples=50)
@given(data=st.data())
def test_each_type_round_trips(cls: type, data: st.DataObject) -> None:
    env = data.draw(envelopes(records(cls)))
    frame = encode(env)
    assert len(frame) <= limits.MAX_FRAME_BYTES
    assert decode(frame) == env


def _embedding(**overrides: object) -> Embedding:
    fields: dict[str, object] = {
        "camera": "cam-01",
        "track_id": 7,
        "reason": EmitReason.FIRST_SIGHT,
        "class_id": 2,
        "confidence": 0.9,
        "box": Box(0.1, 0.1, 0.2, 0.3),
        "codec": 1,
        "code": b"\x01" * 8,
    }
    fields.update(overrides)
    return Embedding(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"confidence": math.nan}, "Embedding.confidence", "NaN is not allowed"),
        ({"confidence": math.inf}, "Embedding.confidence", "must be finite"),
        ({"confidence": 1.5}, "Embedding.confidence", "outside [0.0, 1.0]"),
        ({"track_id": -1}, "Embedding.track_id", "outside [0, 4294967295]"),
        ({"track_id": True}, "Embedding.track_id", "got bool"),
        ({"camera": "cam 01"}, "Embedding.camera", "does not match"),
        ({"camera": ""}, "Embedding.camera", "length 0"),
        ({"code": b""}, "Embedding.code", "must not be empty"),
        ({"code": "abc"}, "Embedding.code", "expected bytes, got str"),
        ({"reason": 99}, "Embedding.reason", "not a valid EmitReason"),
        ({"class_id": 70_000}, "Embedding.class_id", "outside [0, 65535]"),
    ],
)
def test_invalid_fields_are_named(overrides: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        _embedding(**overrides)
    assert info.value.field == field
    assert reason in info.value.reason


def test_box_rules() -> None:
    with pytest.raises(InvalidMessage, match="outside the normalised range"):
        Box(0.0, 0.0, 1.2, 0.5)
    with pytest.raises(InvalidMessage, match="corners out of order"):
        Box(0.5, 0.0, 0.4, 0.5)
    box = Box.from_pixels(-5, 10, 700, 180, width=640, height=360)
    assert (box.x1, box.x2) == (0.0, 1.0)
    assert box.to_pixels(640, 360)[1] == pytest.approx(10, abs=0.01)
    assert Box.from_bytes(box.to_bytes()) == box


def test_detections_arrays_must_align() -> None:
    with pytest.raises(InvalidMessage, match="has 1 items for 2 boxes") as info:
        Detections("cam", (Box(0, 0, 1, 1), Box(0, 0, 1, 1)), (1, 2), (0.5,), (1, 2))
    assert info.value.field == "Detections.confidences"


def test_track_end_times_ordered() -> None:
    with pytest.raises(InvalidMessage, match="before first_seen_us"):
        TrackEnd("cam", 1, 10, 5, 3, {2: 3}, ())
    end = TrackEnd("cam", 1, 1_000_000, 3_500_000, 40, {2: 38, 7: 2}, (Box(0, 0, 0.1, 0.1),))
    assert end.duration_s == 2.5


def test_counts_are_deterministic_bytes() -> None:
    a = Envelope("e", 1, 2, 3, FrameCounts("cam", {7: 1, 2: 4, 0: 2}))
    b = Envelope("e", 1, 2, 3, FrameCounts("cam", {0: 2, 2: 4, 7: 1}))
    assert encode(a) == encode(b)


def test_float_fields_are_float32() -> None:
    hb = Heartbeat(backlog=3, rate_bps=0.1)
    assert hb.rate_bps != 0.1  # rounded to the nearest float32
    assert hb.rate_bps == pytest.approx(0.1, rel=1e-7)
    assert decode(encode(Envelope("e", 0, 0, 0, hb))).message == hb


def test_oversize_frame_refused_at_encode() -> None:
    big = _embedding(code=b"\x9c" * limits.MAX_CODE_BYTES)
    n = limits.MAX_DETECTIONS
    # A frame over 64 KiB cannot be built from one embedding: the limits keep messages sendable.
    assert len(encode(Envelope("e", 1, 0, 0, big))) <= limits.MAX_FRAME_BYTES
    counts = FrameCounts("c" * limits.MAX_ID_CHARS, dict.fromkeys(range(256), 2**32 - 1))
    assert decode(encode(Envelope("e", 1, 0, 0, counts))).message == counts
    dets = Detections("cam", (Box(0, 0, 1, 1),) * n, (1,) * n, (0.5,) * n, tuple(range(n)))
    assert decode(encode(Envelope("e", 1, 0, 0, dets))).message == dets
    with pytest.raises(InvalidMessage, match="exceeds max of 512"):
        Detections("cam", (Box(0, 0, 1, 1),) * (n + 1), (), (), ())
    with pytest.raises(InvalidMessage, match="send_ts_us"):
        Envelope("e", 1, 0, 2**64 - 1, Ack(1, ()))  # storage holds signed 64-bit times


def test_ack_ranges_coalesce_and_expand() -> None:
    ack = Ack.covering([7, 3, 4, 5, 9, 10, 4], watermark=2)
    assert ack.ranges == (3, 5, 7, 7, 9, 10)
    assert ack.seqs() == [3, 4, 5, 7, 9, 10]
    assert decode(encode(Envelope("cloud", 0, 0, 0, ack))).message == ack
    with pytest.raises(InvalidMessage, match="first seq is after last seq"):
        Ack(0, (5, 4))
    with pytest.raises(InvalidMessage, match="pairs"):
        Ack(0, (5,))
