"""Line crossings: once per crossing, in the right direction; touching is not crossing."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.analytics.engine import CompiledScene, analyze_track
from cloud.analytics.events import LineCrossing
from cloud.analytics.geometry import Track
from tests.analytics.scripts import SECOND, scene, track

# A line drawn left to right across the image at y = 0.5: its left is up, its right down.
LINE = {"stop": {"points": [[0.1, 0.5], [0.9, 0.5]]}}


def crossings_of(compiled: CompiledScene, t: Track) -> list[tuple[str, int, int]]:
    return [
        (e.direction, e.at_us, e.key.ordinal)
        for e in analyze_track(compiled, t)
        if isinstance(e, LineCrossing)
    ]


def test_straight_crossing_down_is_in_up_is_out() -> None:
    s = scene(lines=LINE)
    assert crossings_of(s, track([(0.5, 0.45), (0.5, 0.55)])) == [("in", SECOND // 2, 0)]
    assert crossings_of(s, track([(0.5, 0.55), (0.5, 0.45)])) == [("out", SECOND // 2, 0)]


def test_direction_right_to_left_swaps_in_and_out() -> None:
    s = scene(lines={"stop": {**LINE["stop"], "direction": "right_to_left"}})
    assert crossings_of(s, track([(0.5, 0.45), (0.5, 0.55)])) == [("out", SECOND // 2, 0)]
    assert crossings_of(s, track([(0.5, 0.55), (0.5, 0.45)])) == [("in", SECOND // 2, 0)]


def test_crossing_moment_is_interpolated_on_the_segment() -> None:
    # from y 0.4 to 0.6 over 1 s: a quarter of the way at 0.45, the line at 0.5 -> 0.5 s ...
    # ... and from 0.48 to 0.58 between 3 s and 4 s: 20 % of the segment -> 3.2 s
    s = scene(lines=LINE)
    t = track([(0.3, 0.40), (0.3, 0.42), (0.3, 0.46), (0.3, 0.48), (0.3, 0.58)])
    assert crossings_of(s, t) == [("in", 3_200_000, 0)]


def test_touch_and_turn_back_is_not_counted() -> None:
    s = scene(lines=LINE)
    assert crossings_of(s, track([(0.5, 0.45), (0.5, 0.5), (0.5, 0.45)])) == []
    # along the line for a while, then back to the same side
    along = [(0.4, 0.45), (0.4, 0.5), (0.5, 0.5), (0.6, 0.5), (0.6, 0.4)]
    assert crossings_of(s, track(along)) == []


def test_near_miss_beyond_the_end_is_not_counted() -> None:
    s = scene(lines=LINE)
    assert crossings_of(s, track([(0.95, 0.45), (0.95, 0.55)])) == []


def test_point_exactly_on_the_line_counts_once_when_it_leaves() -> None:
    s = scene(lines=LINE)
    assert crossings_of(s, track([(0.5, 0.45), (0.5, 0.5), (0.5, 0.55)])) == [("in", SECOND, 0)]
    # several samples on the line (stopped on it, then moving along it): still one crossing,
    # at the moment it leaves the line
    on = [(0.5, 0.45), (0.5, 0.5), (0.5, 0.5), (0.6, 0.5), (0.6, 0.55)]
    assert crossings_of(s, track(on)) == [("in", 3 * SECOND, 0)]


def test_starting_or_ending_on_the_line_is_not_a_crossing() -> None:
    s = scene(lines=LINE)
    assert crossings_of(s, track([(0.5, 0.5), (0.5, 0.55)])) == []
    assert crossings_of(s, track([(0.5, 0.45), (0.5, 0.5)])) == []


def test_double_crossing_counts_twice_either_way() -> None:
    s = scene(lines=LINE)
    down_up = track([(0.5, 0.45), (0.5, 0.55), (0.5, 0.45)])
    assert crossings_of(s, down_up) == [("in", SECOND // 2, 0), ("out", 3 * SECOND // 2, 1)]
    up_down = track([(0.5, 0.55), (0.5, 0.45), (0.5, 0.55)])
    assert crossings_of(s, up_down) == [("out", SECOND // 2, 0), ("in", 3 * SECOND // 2, 1)]
    # one long segment can cross a polyline twice: into the V (right to left), out again
    vee = scene(lines={"v": {"points": [[0.1, 0.1], [0.5, 0.5], [0.9, 0.1]]}})
    across = track([(0.2, 0.5), (0.5, 0.2), (0.8, 0.5)])
    assert [d for d, _, _ in crossings_of(vee, across)] == ["out", "in"]


def test_polyline_corner() -> None:
    # A V pointing down the image. Walking from its first point (down and right on the
    # image), the right hand points down-left: the inside of the V is its left side.
    vee = scene(lines={"v": {"points": [[0.1, 0.1], [0.5, 0.5], [0.9, 0.1]]}})
    through = track([(0.5, 0.3), (0.5, 0.5), (0.5, 0.7)])
    assert crossings_of(vee, through) == [("in", SECOND, 0)]
    assert crossings_of(vee, track([(0.5, 0.7), (0.5, 0.5), (0.5, 0.3)])) == [("out", SECOND, 0)]
    touch_inside = track([(0.5, 0.3), (0.5, 0.5), (0.5, 0.3)])
    touch_outside = track([(0.3, 0.5), (0.5, 0.5), (0.7, 0.5)])
    assert crossings_of(vee, touch_inside) == crossings_of(vee, touch_outside) == []


def test_lines_are_independent() -> None:
    s = scene(lines={**LINE, "other": {"points": [[0.1, 0.7], [0.9, 0.7]]}})
    events = analyze_track(s, track([(0.5, 0.45), (0.5, 0.75)]))
    assert sorted(e.key.subject for e in events if isinstance(e, LineCrossing)) == [
        "other",
        "stop",
    ]


unit = st.floats(0.05, 0.95)


@settings(max_examples=300, deadline=None)
@given(
    a=st.tuples(unit, unit),
    b=st.tuples(unit, unit),
    at=st.floats(0.05, 0.95),
    angle=st.floats(0.2, math.pi - 0.2),
    before=st.floats(0.01, 0.3),
    after=st.floats(0.01, 0.3),
    n=st.integers(2, 12),
)
def test_random_straight_track_crosses_a_random_line_once(
    a: tuple[float, float],
    b: tuple[float, float],
    at: float,
    angle: float,
    before: float,
    after: float,
    n: int,
) -> None:
    """A straight track through a point of a line, at an angle to it, crosses it exactly once,
    towards the side it heads to, at the moment it passes that point."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy)
    if length < 0.05:
        return
    ux, uy = dx / length, dy / length
    # heading: the line's direction turned by `angle` (positive: towards its right, y down)
    hx, hy = (
        ux * math.cos(angle) - uy * math.sin(angle),
        ux * math.sin(angle) + uy * math.cos(angle),
    )
    cx, cy = a[0] + at * dx, a[1] + at * dy
    start = (cx - before * hx, cy - before * hy)
    total = before + after
    points = [(start[0] + total * k / n * hx, start[1] + total * k / n * hy) for k in range(n + 1)]
    s = scene(lines={"l": {"points": [list(a), list(b)]}})
    t = track(points, step_us=SECOND)
    found = crossings_of(s, t)
    assert len(found) == 1
    direction, moment, ordinal = found[0]
    assert ordinal == 0
    assert direction == "in"  # heading right of the line: left to right
    expected = before / total * n * SECOND
    assert abs(moment - expected) <= 2
    back = track(points[::-1], step_us=SECOND)
    assert [d for d, _, _ in crossings_of(s, back)] == ["out"]


@settings(max_examples=300, deadline=None)
@given(
    row=st.integers(1, 19),
    cells=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=30),
)
def test_crossings_across_the_whole_frame_alternate_and_balance(
    row: int, cells: list[tuple[int, int]]
) -> None:
    """A line across the whole frame at a grid row: any path (often on the line) crosses it
    alternately in and out, and in minus out is where it ends up relative to where it began,
    judged from its first and last samples strictly off the line."""
    y0 = row / 20
    s = scene(lines={"l": {"points": [[0.0, y0], [1.0, y0]]}})
    points = [(x / 20, y / 20) for x, y in cells]
    found = [d for d, _, _ in crossings_of(s, track(points, width=0))]
    assert all(a != b for a, b in itertools.pairwise(found))
    sides = [1 if y > row else -1 for _, y in cells if y != row]  # below the line: right, "in"
    balance = (sides[-1] - sides[0]) // 2 if sides else 0
    assert found.count("in") - found.count("out") == balance
