"""Bundle frames (protocol 4): round trips, the golden fixture, and one precise DecodeError
for every kind of malformed bundle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import limits
from shared.bundle import (
    BUNDLE_TYPE,
    decode_bundle,
    decode_frame,
    encode_bundle,
    quantise,
    quantise_box,
)
from shared.codec import MAGIC, decode, encode
from shared.compression import Compressor
from shared.errors import DecodeError, EncodeError, VersionMismatch
from shared.geometry import Box
from shared.messages import (
    Detections,
    Embedding,
    EmitReason,
    Envelope,
    FrameCounts,
    Heartbeat,
    Message,
    TrackEnd,
    TrackSummary,
)
from shared.pathwire import PathPoint, TrackPath
from shared.varint import write_svarint, write_uvarint
from tests.shared.golden import (
    BUNDLE_SAMPLES,
    BUNDLE_SEND_TS,
    BUNDLE_STEP,
    GOLDEN_DIR,
    RAW,
    SAMPLES,
    T0,
    bundle_fixture,
)

# ---------------------------------------------------------------------- strategies

_units = st.integers(0, 65_535)


@st.composite
def _boxes(draw: st.DrawFn) -> Box:
    x1, x2 = sorted((draw(_units), draw(_units)))
    y1, y2 = sorted((draw(_units), draw(_units)))
    return Box(x1 / 65_535, y1 / 65_535, x2 / 65_535, y2 / 65_535)


_cameras = st.sampled_from(["cam-01", "cam-02", "c"])
_tracks = st.integers(0, 6) | st.integers(0, 2**32 - 1)
_conf = st.floats(0.0, 1.0, width=32)
_classes = st.integers(0, limits.MAX_CLASS_ID)
_hist = st.dictionaries(_classes, st.integers(0, limits.MAX_COUNT), max_size=5)


@st.composite
def _detections(draw: st.DrawFn) -> Detections:
    n = draw(st.integers(0, 6))
    return Detections(
        draw(_cameras),
        tuple(draw(_boxes()) for _ in range(n)),
        tuple(draw(_classes) for _ in range(n)),
        tuple(draw(_conf) for _ in range(n)),
        tuple(draw(_tracks) for _ in range(n)),
    )


_embeddings = st.builds(
    Embedding,
    _cameras,
    _tracks,
    st.sampled_from(list(EmitReason)),
    _classes,
    _conf,
    _boxes(),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=1, max_size=64),
)


@st.composite
def _track_end(draw: st.DrawFn, capture: int) -> TrackEnd:
    first = draw(st.integers(0, limits.MAX_TS_US))
    last = draw(st.integers(first, limits.MAX_TS_US))
    if draw(st.booleans()):  # the usual case: frame times near the message's own
        first = max(0, capture - draw(st.integers(0, 10**7)))
        last = min(limits.MAX_TS_US, first + draw(st.integers(0, 10**7)))
    return TrackEnd(
        draw(_cameras),
        draw(_tracks),
        first,
        last,
        draw(st.integers(0, 2**32 - 1)),
        draw(_hist),
        tuple(draw(_boxes()) for _ in range(draw(st.integers(0, 5)))),
    )


@st.composite
def _track_summary(draw: st.DrawFn, capture: int) -> TrackSummary:
    first = max(0, capture - draw(st.integers(0, 10**7)))
    last = min(limits.MAX_TS_US, first + draw(st.integers(0, 10**7)))
    span_ms = (last - first) // 1000
    offsets = sorted(draw(st.lists(st.integers(0, span_ms), max_size=4)))
    grid = draw(st.sampled_from([1, 64, 4096]))
    return TrackSummary(
        draw(_cameras),
        draw(_tracks),
        first,
        last,
        draw(st.integers(0, 2**32 - 1)),
        draw(_hist),
        draw(st.booleans()),
        TrackPath(grid, tuple(PathPoint(t, draw(_boxes())) for t in offsets)),
    )


@st.composite
def _bundles(draw: st.DrawFn) -> list[Envelope]:
    edge = draw(st.sampled_from(["edge-01", "e", "x" * 64]))
    n = draw(st.integers(1, 12))
    seq = draw(st.integers(1, limits.MAX_SEQ) | st.integers(limits.MAX_SEQ - 20, limits.MAX_SEQ))
    ts = draw(st.integers(0, limits.MAX_TS_US) | st.integers(T0, T0 + 10**9))
    period = draw(st.sampled_from([1, 40_000, 33_367, 100_000]))
    seen: set[int] = set()
    out = []
    for _ in range(n):
        seq = min(max(1, seq + draw(st.integers(-3, 3) | st.just(1))), limits.MAX_SEQ)
        if seq in seen:
            continue
        seen.add(seq)
        ts = min(max(0, ts + period * draw(st.integers(-2, 5))), limits.MAX_TS_US)
        kind = draw(st.integers(0, 4))
        message: Message
        if kind == 0:
            message = draw(_detections())
        elif kind == 1:
            message = draw(_embeddings)
        elif kind == 2:
            message = draw(_track_end(ts))
        elif kind == 4:
            message = draw(_track_summary(ts))
        else:
            message = FrameCounts(draw(_cameras), draw(_hist))
        out.append(Envelope(edge, seq, ts, ts, message))
    return out


# ---------------------------------------------------------------------- round trips


@settings(max_examples=300, deadline=None)
@given(
    envelopes=_bundles(),
    step=st.sampled_from([1, 7, 64, 1024, 65_535]),
    compress=st.booleans(),
    send_after=st.integers(0, 10**6),
)
def test_a_bundle_round_trips_every_message_as_quantised(
    envelopes: list[Envelope], step: int, compress: bool, send_after: int
) -> None:
    send = min(max(e.capture_ts_us for e in envelopes) + send_after, limits.MAX_TS_US)
    frame = encode_bundle(
        envelopes, box_step=step, send_ts_us=send, compressor=None if compress else RAW
    )
    assert frame[3] == BUNDLE_TYPE
    got = decode_frame(frame)
    assert [(e.edge_id, e.seq, e.capture_ts_us) for e in got] == [
        (e.edge_id, e.seq, e.capture_ts_us) for e in envelopes
    ]
    assert all(e.send_ts_us == send for e in got)
    assert [e.message for e in got] == [quantise(e.message, step) for e in envelopes]


@settings(deadline=None)
@given(box=_boxes(), step=st.sampled_from([1, 3, 64, 4096]))
def test_a_box_moves_at_most_half_a_grid_step(box: Box, step: int) -> None:
    q = quantise_box(box, step)
    for a, b in zip((box.x1, box.y1, box.x2, box.y2), (q.x1, q.y1, q.x2, q.y2), strict=True):
        assert abs(a - b) <= (step / 2) / 65_535 + 1e-12


def test_step_one_keeps_boxes_exact_and_a_track_moving_costs_little() -> None:
    moving = [
        Envelope(
            "e",
            i + 1,
            T0 + i * 40_000,
            T0 + i * 40_000,
            Detections(
                "cam", (Box(0.1 + 0.002 * i, 0.3, 0.2 + 0.002 * i, 0.4),), (2,), (0.5,), (7,)
            ),
        )
        for i in range(50)
    ]
    got = decode_bundle(encode_bundle(moving, box_step=1, compressor=RAW))
    assert [e.message.boxes for e in got] == [e.message.boxes for e in moving]  # type: ignore[union-attr]
    coarse = encode_bundle(moving, box_step=64, compressor=RAW)
    singles = sum(len(encode(e, RAW)) for e in moving)
    # 12 bytes a message (type, seq delta, time delta in frame periods, camera, count,
    # track, class, confidence, 4 one-byte box deltas), a prefix and header of about 30
    assert len(coarse) <= 50 * 12 + 32 < singles / 3


def test_the_golden_bundle() -> None:
    golden = (GOLDEN_DIR / "bundle.bin").read_bytes()
    assert bundle_fixture() == golden, "wire format changed: see tests/shared/golden.py"
    got = decode_bundle(golden)
    assert [e.seq for e in got] == [42, 43, 44, 45, 48, 47]
    assert all(e.send_ts_us == BUNDLE_SEND_TS for e in got)
    assert [e.message for e in got] == [quantise(e.message, BUNDLE_STEP) for e in BUNDLE_SAMPLES]
    # the second Detections of tracks 3 and 9 is coded as the change from their first boxes
    assert len(golden) < sum(len(encode(e, RAW)) for e in BUNDLE_SAMPLES) * 0.6


def test_a_bundle_compresses_only_when_that_pays() -> None:
    raw = bundle_fixture()
    assert raw[4] == 0
    packed = bundle_fixture(Compressor(min_bytes=0, level=19))
    assert decode_bundle(packed) == decode_bundle(raw)
    assert packed[4] == (1 if len(packed) < len(raw) else 0)


# ---------------------------------------------------------------------- refusals


def _sample() -> list[Envelope]:
    return list(BUNDLE_SAMPLES)


@pytest.mark.parametrize(
    ("envelopes", "match"),
    [
        ([], "at least one message"),
        ([Envelope("e", 0, 1, 1, Heartbeat(0, 0.0))], "control message"),
        ([Envelope("e", 0, 1, 1, FrameCounts("c", {}))], "seq 0"),
        (
            [
                Envelope("a", 1, 1, 1, FrameCounts("c", {})),
                Envelope("b", 2, 1, 1, FrameCounts("c", {})),
            ],
            "two edges",
        ),
        (
            [
                Envelope("e", i + 1, 1, 1, FrameCounts("c", {}))
                for i in range(limits.MAX_BUNDLE_MESSAGES + 1)
            ],
            "exceeds max of 4096",
        ),
    ],
)
def test_what_cannot_be_bundled_is_an_encode_error(envelopes: list[Envelope], match: str) -> None:
    with pytest.raises(EncodeError, match=match):
        encode_bundle(envelopes)


def _body(
    *,
    edge: bytes = b"e",
    step: int = 1,
    unit: int = 1,
    base: int = 1000,
    send: int = 0,
    seq: int = 1,
    cameras: tuple[bytes, ...] = (b"c",),
    count: int = 1,
    messages: bytes = b"",
) -> bytes:
    out = bytearray()
    write_uvarint(out, len(edge))
    out += edge
    for v in (step, unit, base):
        write_uvarint(out, v)
    write_svarint(out, send)
    write_uvarint(out, seq)
    write_uvarint(out, len(cameras))
    for cam in cameras:
        write_uvarint(out, len(cam))
        out += cam
    write_uvarint(out, count)
    return bytes(out + messages)


def _counts(seq_delta: int = 0, time_delta: int = 0, camera: int = 0) -> bytes:
    out = bytearray([6])
    write_svarint(out, seq_delta)
    write_svarint(out, time_delta)
    write_uvarint(out, camera)
    write_uvarint(out, 1)  # one class
    out += bytes([2, 3])  # class 2: 3
    return bytes(out)


def _frame(body: bytes, version: int = limits.PROTOCOL_VERSION, flags: int = 0) -> bytes:
    return MAGIC + bytes([version, BUNDLE_TYPE, flags]) + body


def test_a_hand_made_bundle_decodes() -> None:
    (env,) = decode_bundle(_frame(_body(messages=_counts())))
    assert env == Envelope("e", 1, 1000, 1000, FrameCounts("c", {2: 3}))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (_frame(b""), "truncated frame: 5 bytes"),
        (_frame(_body(messages=_counts())[:-1]), "truncated bundle"),
        (_frame(_body(messages=_counts() + b"\x00")), "1 trailing bytes"),
        (_frame(_body()[:3] + b"\xff" * 11), "longer than 10 bytes"),
        (_frame(_body(seq=limits.MAX_SEQ, messages=_counts(seq_delta=1))), "outside \\[1, "),
        (_frame(_body(seq=limits.MAX_SEQ + 1)), "seq base .* exceeds max"),
        (_frame(_body(seq=1, messages=_counts(seq_delta=-1))), "seq 0 is outside"),
        (_frame(_body(count=2, messages=_counts() + _counts())), "seq 1 twice"),
        (_frame(_body(count=limits.MAX_BUNDLE_MESSAGES + 1)), "message count 4097 .* exceeds"),
        (_frame(_body(count=0)), "empty bundle"),
        (_frame(_body(step=0)), "box step 0"),
        (_frame(_body(unit=0)), "time unit 0"),
        (_frame(_body(send=-2000)), "send time -1000"),
        (_frame(_body(messages=_counts(time_delta=-1001))), "capture time -1 us"),
        (_frame(_body(messages=_counts(camera=1))), "camera index 1, the bundle names 1"),
        (_frame(_body(cameras=(b"bad id!",), messages=_counts())), "Detections|FrameCounts.camera"),
        (_frame(_body(edge=b"\xff", messages=_counts())), "not UTF-8"),
        (_frame(_body(messages=bytes([99]))), "unknown message type 99"),
        (_frame(_body(messages=bytes([8]))), "control message HEARTBEAT inside a bundle"),
        (_frame(_body(messages=bytes([32]))), "unknown message type 32"),
        (_frame(_body(messages=_counts()), version=3), "protocol version 3"),
        (_frame(_body(messages=_counts()), flags=2), "unknown flag bits"),
        (_frame(_body(messages=_counts()), flags=1), "zstd"),
        (b"XX" + _frame(_body())[2:], "bad magic"),
    ],
)
def test_every_malformed_bundle_is_one_precise_decode_error(frame: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_frame(frame)


def test_a_box_that_leaves_the_frame_is_refused() -> None:
    msg = bytearray([3])  # Detections
    write_svarint(msg, 0)
    write_svarint(msg, 0)
    msg += bytes([0, 1, 5, 2, 200])  # camera 0, one box, track 5, class 2, conf 200/255
    for v in (60_000, 0, 6_000, 10):  # x1 + w > 65,535
        write_uvarint(msg, v)
    with pytest.raises(DecodeError, match="box 0 leaves the frame"):
        decode_bundle(_frame(_body(messages=bytes(msg))))


def test_an_old_version_bundle_is_a_version_mismatch() -> None:
    with pytest.raises(VersionMismatch) as info:
        decode_bundle(_frame(_body(messages=_counts()), version=3))
    assert info.value.got == 3


def test_the_single_frame_decoder_points_at_bundles() -> None:
    with pytest.raises(DecodeError, match=r"shared\.bundle\.decode_frame"):
        decode(bundle_fixture())
    assert decode_frame(encode(SAMPLES["frame_counts"])) == [SAMPLES["frame_counts"]]
