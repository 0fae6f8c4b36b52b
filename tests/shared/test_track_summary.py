"""TrackSummary (type 10): its path's compact coding, bounds and precise decode errors."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings

from shared import limits
from shared.codec import decode, encode
from shared.errors import DecodeError, InvalidMessage
from shared.geometry import BOX_UNITS, Box
from shared.messages import Envelope, TrackSummary
from shared.pathwire import PathPoint, PathType, TrackPath, quantise
from tests.strategies import envelopes, track_paths, track_summaries


def _summary(path: TrackPath, **overrides: object) -> TrackSummary:
    fields: dict[str, object] = {
        "camera": "cam-01",
        "track_id": 7,
        "first_seen_us": 1_000_000,
        "last_seen_us": 3_000_000,
        "frames": 50,
        "class_votes": {2: 48, 7: 2},
        "final": True,
        "path": path,
    }
    fields.update(overrides)
    return TrackSummary(**fields)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)  # timing is not under test (shared CI load)
@given(envelopes(track_summaries()))
def test_summaries_round_trip(env: Envelope) -> None:
    assert decode(encode(env)) == env


@settings(max_examples=300, deadline=None)  # timing is not under test (shared CI load)
@given(track_paths())
def test_path_coding_round_trips_and_quantising_is_idempotent(path: TrackPath) -> None:
    kind = PathType()
    checked = kind.check(path, "p")
    assert kind.unpack(kind.pack(checked), "p") == checked
    assert kind.check(checked, "p") == checked


def test_hand_coded_path_bytes() -> None:
    step = 16 / BOX_UNITS
    path = TrackPath(
        16,
        (
            PathPoint(0, Box(10 * step, 20 * step, 30 * step, 60 * step)),
            PathPoint(40, Box(12 * step, 19 * step, 32 * step, 59 * step)),
        ),
    )
    # grid 16, 2 points; (0 ms, +10, +20, w 20, h 40); (+40 ms, +2, -1, w +0, h +0)
    assert PathType().pack(path) == bytes([16, 2, 0, 20, 40, 40, 80, 40, 4, 1, 0, 0])


def test_grid_snaps_boxes_and_the_far_edge_stays_on_the_frame() -> None:
    box = Box(0.10001, 0.5, 0.99999, 1.0)
    for grid in (1, 7, 16, 100, 4096):
        q = quantise(box, grid)
        assert q.x2 <= 1.0
        assert q.y2 == 1.0
        assert abs(q.x1 - box.x1) <= grid / BOX_UNITS / 2 + 1e-9
        assert quantise(q, grid) == q


def test_a_summary_is_small() -> None:
    points = tuple(
        PathPoint(40 * i, Box(0.1 + 0.01 * i, 0.4, 0.2 + 0.01 * i, 0.5)) for i in range(20)
    )
    frame = encode(Envelope("edge-1", 9, 3_000_000, 3_000_000, _summary(TrackPath(16, points))))
    assert len(PathType().pack(TrackPath(16, points))) <= 2 + 20 * 6
    assert decode(frame).message.path.points[5].offset_ms == 200  # type: ignore[union-attr]


def _frame_with_path(raw: bytes) -> bytes:
    """A valid TrackSummary frame whose path bin is replaced by ``raw``."""
    good = encode(Envelope("edge-1", 9, 3_000_000, 3_000_000, _summary(TrackPath(16, ()))))
    empty: bytes = msgpack.packb(PathType().pack(TrackPath(16, ())))
    assert good.endswith(empty)
    replaced: bytes = msgpack.packb(raw)
    return good[: -len(empty)] + replaced


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "ends inside the grid"),
        (bytes([0, 0]), "grid: 0 is outside 1..4096"),
        (bytes([0x80, 0x40, 0]), "grid: 8192 is outside"),
        (bytes([16, 1, 0, 0, 0]), "ends inside point 0's width"),
        (bytes([16, 0x81, 0x02]), "257 points exceeds max of 256"),
        (bytes([16, 1, 0, 0, 0, 0, 0, 9]), "1 bytes left after 1 points"),
        (bytes([16, 1, 0, 1, 0, 0, 0]), "box (cells -1, 0, 0 x 0) is outside the frame"),
        (bytes([16, 1, 0, 0, 0, 0x82, 0x40, 0]), "is outside the frame"),  # w 4097 cells
        (bytes([16, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0]), "longer than 5 bytes"),
        (bytes([16, 1, 0xB8, 0x17, 0, 0, 0, 0]), "3000 ms is after last_seen_us (2000 ms)"),
    ],
)
def test_bad_paths_give_precise_decode_errors(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=r"TrackSummary\.path") as err:
        decode(_frame_with_path(raw))
    assert message in str(err.value)


def test_construction_rules() -> None:
    with pytest.raises(InvalidMessage, match="before first_seen_us"):
        _summary(TrackPath(16, ()), first_seen_us=5, last_seen_us=4)
    with pytest.raises(InvalidMessage, match="offsets never decrease"):
        _summary(TrackPath(16, (PathPoint(40, Box(0, 0, 1, 1)), PathPoint(0, Box(0, 0, 1, 1)))))
    with pytest.raises(InvalidMessage, match="grid"):
        _summary(TrackPath(0, ()))
    too_many = tuple(PathPoint(0, Box(0, 0, 1, 1)) for _ in range(limits.MAX_PATH_POINTS + 1))
    with pytest.raises(InvalidMessage, match="257 points exceeds max of 256"):
        _summary(TrackPath(16, too_many))


def test_point_times() -> None:
    s = _summary(TrackPath(1, (PathPoint(0, Box(0, 0, 1, 1)), PathPoint(2000, Box(0, 0, 1, 1)))))
    assert s.point_times_us() == [1_000_000, 3_000_000]
