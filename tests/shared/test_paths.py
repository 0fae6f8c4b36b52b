"""Path simplification and interpolation against hand-computed cases."""

from __future__ import annotations

import pytest

from shared.geometry import Box
from shared.paths import BoxAt, TimedBox, boxes_at, simplify

W, H = 1000, 500  # px: a box of 20 x 10 px is 0.02 x 0.02 of the frame


def _at(t_ms: int, cx_px: float, cy_px: float, w_px: float = 20, h_px: float = 10) -> TimedBox:
    return TimedBox(
        t_ms * 1000,
        Box(
            (cx_px - w_px / 2) / W,
            (cy_px - h_px / 2) / H,
            (cx_px + w_px / 2) / W,
            (cy_px + h_px / 2) / H,
        ),
    )


def test_straight_constant_speed_path_keeps_its_endpoints_and_interpolates_exactly() -> None:
    path = [_at(40 * i, 100 + 10 * i, 200) for i in range(11)]  # 10 px per 40 ms, rightwards
    assert simplify(path, 0.5, W, H) == [0, 10]
    kept = [path[0], path[10]]
    got = boxes_at(kept, [p.t_us for p in path])
    for want, at in zip(path, got, strict=True):
        assert at.box.to_pixels(W, H) == pytest.approx(want.box.to_pixels(W, H), abs=0.02)
    assert [a.interpolated for a in got] == [False] + [True] * 9 + [False]


def test_l_shaped_path_keeps_its_corner() -> None:
    right = [_at(40 * i, 100 + 10 * i, 200) for i in range(6)]  # to (150, 200) at 200 ms
    down = [_at(200 + 40 * i, 150, 200 + 10 * i) for i in range(1, 6)]  # then to (150, 250)
    assert simplify(right + down, 2.0, W, H) == [0, 5, 10]


def test_tolerance_boundary() -> None:
    # The middle point is 3 px off the line, on time (boxes quantise to 1/65535 of the frame:
    # 0.008 px here): within a tolerance just over 3 px it is dropped, just under it is kept.
    path = [_at(0, 100, 200), _at(40, 110, 203), _at(80, 120, 200)]
    assert simplify(path, 3.01, W, H) == [0, 2]
    assert simplify(path, 2.99, W, H) == [0, 1, 2]


def test_a_stop_on_a_straight_road_is_kept() -> None:
    # Drives 100 px in 400 ms, waits 2 s, drives 100 px more: spatially one straight line,
    # but interpolating between the ends would put it 50 px off during the wait.
    go = [_at(40 * i, 100 + 10 * i, 200) for i in range(11)]
    wait = [_at(400 + 40 * i, 200, 200) for i in range(1, 51)]
    on = [_at(2400 + 40 * i, 200 + 10 * i, 200) for i in range(1, 11)]
    path = go + wait + on
    kept = simplify(path, 2.0, W, H)
    assert kept == [0, 10, 60, 70]


def test_a_growing_box_is_kept_by_its_size() -> None:
    # Centre fixed, width grows 20 -> 60 px then stays: the size change is the corner.
    path = [_at(40 * i, 300, 200, w_px=20 + 8 * i) for i in range(6)]
    path += [_at(200 + 40 * i, 300, 200, w_px=60) for i in range(1, 6)]
    assert simplify(path, 2.0, W, H) == [0, 5, 10]


def test_single_point_and_two_points() -> None:
    one = [_at(0, 100, 100)]
    assert simplify(one, 1.0, W, H) == [0]
    assert simplify(one * 2, 1.0, W, H) == [0, 1]
    assert simplify([], 1.0, W, H) == []
    got = boxes_at(one, [0, 1000, -5])
    assert got == [
        BoxAt(0, one[0].box, False),
        BoxAt(1000, one[0].box, True),  # held after
        BoxAt(-5, one[0].box, True),  # and before
    ]


def test_duplicate_times() -> None:
    a, b, c = _at(0, 100, 100), _at(40, 120, 100), _at(40, 140, 100)
    # simplify: a zero-length time span measures from its start point
    assert simplify([a, b, c], 1.0, W, H) == [0, 1, 2]
    got = boxes_at([a, b, c, _at(80, 160, 100)], [40_000, 60_000])
    assert got[0] == BoxAt(40_000, b.box, False)  # the first point of that time
    assert got[1].box.to_pixels(W, H)[0] == pytest.approx((120 + 160) / 2 - 10, abs=0.02)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        simplify([_at(0, 100, 100)], -1, W, H)
    with pytest.raises(ValueError, match="time order"):
        simplify([_at(40, 100, 100), _at(0, 110, 100), _at(80, 120, 100)], 1, W, H)
    with pytest.raises(ValueError, match="empty path"):
        boxes_at([], [0])
