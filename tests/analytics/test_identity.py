"""Event identities: re-processing never double-counts; a growing track keeps its events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.analytics.engine import analyze_track
from cloud.analytics.events import Event, EventKey, LineCrossing, Speed
from cloud.analytics.geometry import Track
from tests.analytics.scripts import SECOND, scene, track

SCENE = scene(
    lines={
        "h": {"points": [[0.1, 0.5], [0.9, 0.5]]},
        "v": {"points": [[0.5, 0.1], [0.5, 0.5], [0.7, 0.9]], "direction": "right_to_left"},
    },
    zones={
        "box": {
            "polygon": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]],
            "stopping_expected": False,
            "stopped_after_s": 3,
        },
        "lane": {
            "polygon": [[0.3, 0.1], [0.6, 0.1], [0.6, 0.9], [0.3, 0.9]],
            "direction": [[0.45, 0.9], [0.45, 0.1]],
        },
    },
    speed_min_segment_s=0.5,
)

#: down through the box, across both lines, a stop, back up (wrong way in the lane), across
#: the line again
SCRIPT = (
    [(0.45, 0.05 + 0.05 * k) for k in range(10)]
    + [(0.45, 0.55)] * 6
    + [(0.45, 0.55 - 0.05 * k) for k in range(1, 10)]
    + [(0.45 + 0.05 * k, 0.1) for k in range(1, 6)]
)


def by_key(events: list[Event]) -> dict[EventKey, Event]:
    keys = [e.key for e in events]
    assert len(set(keys)) == len(keys), "an identity appears twice"
    return {e.key: e for e in events}


def check_prefix(short: Track, full: Track) -> None:
    """The events of a prefix are those of the whole track (same keys, same values), and
    every event of the whole track before the prefix's last sample is among them."""
    before = by_key(analyze_track(SCENE, short))
    after = by_key(analyze_track(SCENE, full))
    assert set(before) <= set(after)
    for key, event in before.items():
        if not isinstance(event, Speed):
            assert after[key] == event
    last = short.samples[-1][0]
    assert {k for k, e in after.items() if e.at_us < last} <= set(before)


def test_script_has_every_kind_of_event() -> None:
    kinds = {e.key.kind for e in analyze_track(SCENE, track(SCRIPT, step_us=SECOND // 2))}
    assert kinds == {
        "line_crossing",
        "zone_entry",
        "zone_exit",
        "stopped_vehicle",
        "wrong_way",
        "speed",
    }


def test_reprocessing_gives_the_same_events() -> None:
    t = track(SCRIPT, step_us=SECOND // 2)
    first = analyze_track(SCENE, t)
    assert analyze_track(SCENE, t) == first
    assert analyze_track(SCENE, track(SCRIPT, step_us=SECOND // 2)) == first
    crossings = [e for e in first if isinstance(e, LineCrossing) and e.line == "h"]
    assert [(e.direction, e.key.ordinal) for e in crossings] == [("in", 0), ("out", 1)]


def test_every_prefix_of_the_script() -> None:
    full = track(SCRIPT, step_us=SECOND // 2)
    for n in range(1, len(SCRIPT) + 1):
        check_prefix(track(SCRIPT[:n], step_us=SECOND // 2), full)


def test_an_ended_track_closes_its_stays() -> None:
    inside = SCRIPT[:16]  # stopped in the box
    still = by_key(analyze_track(SCENE, track(inside, step_us=SECOND // 2)))
    ended = by_key(analyze_track(SCENE, track(inside, step_us=SECOND // 2, ended=True)))
    new = set(ended) - set(still)
    assert {k.kind for k in new} == {"zone_exit"}
    assert set(still) <= set(ended)


step = st.tuples(st.floats(-0.08, 0.08), st.floats(-0.08, 0.08))


@settings(max_examples=200, deadline=None)
@given(
    start=st.tuples(st.floats(0.05, 0.95), st.floats(0.05, 0.95)),
    steps=st.lists(st.one_of(step, st.just((0.0, 0.0))), min_size=1, max_size=40),
    gaps=st.lists(st.integers(1, 800_000), min_size=40, max_size=40),
    cut=st.integers(1, 40),
)
def test_growing_random_track(
    start: tuple[float, float],
    steps: list[tuple[float, float]],
    gaps: list[int],
    cut: int,
) -> None:
    points = [start]
    for dx, dy in steps:
        x, y = points[-1]
        points.append((min(max(x + dx, 0.0), 1.0), min(max(y + dy, 0.0), 1.0)))
    times = [0]
    for gap in gaps[: len(points) - 1]:
        times.append(times[-1] + gap)
    full = track(points, times)
    cut = min(cut, len(points))
    check_prefix(track(points[:cut], times[:cut]), full)


@settings(max_examples=300, deadline=None)
@given(
    start=st.tuples(st.integers(0, 20), st.integers(0, 20)),
    steps=st.lists(st.tuples(st.integers(-2, 2), st.integers(-2, 2)), min_size=1, max_size=40),
    cut=st.integers(1, 40),
)
def test_growing_track_on_a_grid(
    start: tuple[int, int], steps: list[tuple[int, int]], cut: int
) -> None:
    """Grid points (multiples of 0.05) often lie exactly on the lines and zone boundaries."""
    cells = [start]
    for dx, dy in steps:
        x, y = cells[-1]
        cells.append((min(max(x + dx, 0), 20), min(max(y + dy, 0), 20)))
    points = [(x / 20, y / 20) for x, y in cells]
    full = track(points, step_us=SECOND // 4, width=0)
    cut = min(cut, len(points))
    check_prefix(track(points[:cut], step_us=SECOND // 4, width=0), full)
