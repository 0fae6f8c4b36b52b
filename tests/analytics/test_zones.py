"""Zone entries, exits and dwell; stopped vehicles; wrong way."""

from __future__ import annotations

from cloud.analytics.engine import CompiledScene, analyze_track
from cloud.analytics.events import Event, StoppedVehicle, WrongWay, ZoneEntry, ZoneExit
from cloud.analytics.geometry import Track
from tests.analytics.scripts import PERSON, SECOND, scene, track

SQUARE = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]
#: left to right through the square at y = 0.5, 0.1 of the width per second from x = 0.15:
#: the boundary at x = 0.2 (t = 0.5 s) and x = 0.8 (t = 6.5 s)
ACROSS = [(0.15 + 0.1 * k, 0.5) for k in range(8)]


def zone_events(compiled: CompiledScene, t: Track) -> list[Event]:
    return [
        e
        for e in analyze_track(compiled, t)
        if isinstance(e, ZoneEntry | ZoneExit | StoppedVehicle | WrongWay)
    ]


def test_entry_exit_and_exact_dwell() -> None:
    s = scene(zones={"box": {"polygon": SQUARE}})
    entry, exit_ = zone_events(s, track(ACROSS))
    assert isinstance(entry, ZoneEntry)
    assert (entry.zone, entry.at_us, entry.crossed, str(entry.key)) == (
        "box",
        500_000,
        True,
        "t1/zone_entry/box/0",
    )
    assert isinstance(exit_, ZoneExit)
    assert (exit_.at_us, exit_.entered_us, exit_.dwell_us, exit_.crossed) == (
        6_500_000,
        500_000,
        6_000_000,
        True,
    )
    assert exit_.key.ordinal == 0


def test_uneven_sampling_interpolates_the_boundary_moment() -> None:
    # the boundary x = 0.2 is 1/4 of the way from 0.1 (t = 1 s) to 0.5 (t = 3 s): 1.5 s;
    # x = 0.8 is 3/4 of the way from 0.5 (3 s) to 0.9 (3.4 s): 3.3 s
    s = scene(zones={"box": {"polygon": SQUARE}})
    t = track([(0.05, 0.5), (0.1, 0.5), (0.5, 0.5), (0.9, 0.5)], [0, SECOND, 3 * SECOND, 3_400_000])
    entry, exit_ = zone_events(s, t)
    assert (entry.at_us, exit_.at_us) == (1_500_000, 3_300_000)
    assert isinstance(exit_, ZoneExit)
    assert exit_.dwell_us == 1_800_000


def test_boundary_points_do_not_change_state() -> None:
    s = scene(zones={"box": {"polygon": SQUARE}})
    touch = track([(0.1, 0.5), (0.2, 0.5), (0.1, 0.5)])
    assert zone_events(s, touch) == []
    step_on = track([(0.1, 0.5), (0.2, 0.5), (0.3, 0.5), (0.3, 0.9)])
    entry, exit_ = zone_events(s, step_on)
    assert (entry.at_us, exit_.at_us) == (SECOND, 2 * SECOND + 3 * SECOND // 4)
    # a chord between two boundary points through the inside: in and out
    chord = track([(0.1, 0.5), (0.2, 0.5), (0.5, 0.2), (0.5, 0.1)])
    assert [type(e).__name__ for e in zone_events(s, chord)] == ["ZoneEntry", "ZoneExit"]


def test_reentry_is_a_second_stay() -> None:
    s = scene(zones={"box": {"polygon": SQUARE}})
    t = track([(0.1, 0.5), (0.3, 0.5), (0.1, 0.5), (0.3, 0.5)])
    events = zone_events(s, t)
    assert [(type(e).__name__, e.key.ordinal, e.at_us) for e in events] == [
        ("ZoneEntry", 0, 500_000),
        ("ZoneExit", 0, 1_500_000),
        ("ZoneEntry", 1, 2_500_000),
    ]


def test_track_starting_inside_and_ended_inside() -> None:
    s = scene(zones={"box": {"polygon": SQUARE}})
    inside = [(0.4, 0.5), (0.5, 0.5), (0.6, 0.5)]
    (entry,) = zone_events(s, track(inside, [10, 20, 30]))
    assert isinstance(entry, ZoneEntry)
    assert (entry.at_us, entry.crossed) == (10, False)
    entry, exit_ = zone_events(s, track(inside, [10, 20, 30], ended=True))
    assert isinstance(exit_, ZoneExit)
    assert (exit_.at_us, exit_.dwell_us, exit_.crossed) == (30, 20, False)


NO_STOPPING = {"polygon": SQUARE, "stopping_expected": False, "stopped_after_s": 10}
#: enters at 0.5 s (as ACROSS), then stands still at (0.35, 0.5) from 2 s to 20 s
STANDING = ACROSS[:3] + [(0.35, 0.5)] * 18


def test_stopped_vehicle_in_a_no_stopping_zone() -> None:
    s = scene(zones={"box": NO_STOPPING})
    (stopped,) = [e for e in zone_events(s, track(STANDING)) if isinstance(e, StoppedVehicle)]
    assert (stopped.at_us, stopped.since_us, str(stopped.key)) == (
        10_500_000,
        500_000,
        "t1/stopped_vehicle/box/0",
    )


def test_stopped_vehicle_needs_the_threshold_reached() -> None:
    s = scene(zones={"box": NO_STOPPING})
    # samples up to 10 s: the stay is 9.5 s so far
    assert not any(isinstance(e, StoppedVehicle) for e in zone_events(s, track(STANDING[:11])))
    # passing through in 6 s
    assert not any(isinstance(e, StoppedVehicle) for e in zone_events(s, track(ACROSS)))


def test_a_person_who_stops_is_not_a_stopped_vehicle() -> None:
    s = scene(zones={"box": NO_STOPPING})
    assert not any(
        isinstance(e, StoppedVehicle) for e in zone_events(s, track(STANDING, class_id=PERSON))
    )
    assert not any(
        isinstance(e, StoppedVehicle) for e in zone_events(s, track(STANDING, class_id=None))
    )


def test_stopping_expected_by_default() -> None:
    s = scene(zones={"box": {"polygon": SQUARE}})
    assert not any(isinstance(e, StoppedVehicle) for e in zone_events(s, track(STANDING)))


#: a one-way lane up the middle of the image: traffic goes up (y decreasing)
LANE = {
    "polygon": [[0.4, 0.1], [0.6, 0.1], [0.6, 0.9], [0.4, 0.9]],
    "direction": [[0.5, 0.9], [0.5, 0.1]],
}


def test_wrong_way_in_a_one_way_zone() -> None:
    s = scene(zones={"lane": LANE})
    # down the lane at 0.1 of the height per second from y = 0.05: enters at 0.5 s; on a
    # 16:9 frame 0.05 image widths (the default) is 0.05 * 16 / 9 of the height, reached
    # 0.05 * 16 / 9 / 0.1 s after entering
    down = track([(0.5, 0.05 + 0.1 * k) for k in range(10)])
    (wrong,) = [e for e in zone_events(s, down) if isinstance(e, WrongWay)]
    assert abs(wrong.at_us - (500_000 + 0.05 * 16 / 9 / 0.1 * SECOND)) <= 1
    assert (wrong.distance, wrong.unit, str(wrong.key)) == (
        0.05,
        "image_widths",
        "t1/wrong_way/lane/0",
    )
    up = track([(0.5, 0.95 - 0.1 * k) for k in range(10)])
    assert not any(isinstance(e, WrongWay) for e in zone_events(s, up))


def test_wrong_way_needs_the_minimum_distance() -> None:
    s = scene(zones={"lane": {**LANE, "wrong_way_min_distance": 0.2}})
    # up to y = 0.3, back down to 0.6 (0.3 of the height = 0.169 widths), then up again
    wobble = track([(0.5, 0.5), (0.5, 0.3), (0.5, 0.6), (0.5, 0.2)])
    assert not any(isinstance(e, WrongWay) for e in zone_events(s, wobble))
    further = track([(0.5, 0.5), (0.5, 0.3), (0.5, 0.7)])
    (wrong,) = [e for e in zone_events(s, further) if isinstance(e, WrongWay)]
    # 0.2 widths = 0.3556 of the height below y = 0.3, on the segment 0.3 -> 0.7 (1 s -> 2 s)
    assert abs(wrong.at_us - (SECOND + 0.2 * 16 / 9 / 0.4 * SECOND)) <= 1


def test_wrong_way_outside_the_zone_does_not_count() -> None:
    s = scene(zones={"lane": LANE})
    beside = track([(0.8, 0.1 + 0.1 * k) for k in range(9)])
    assert zone_events(s, beside) == []
