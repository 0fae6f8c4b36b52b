"""Speeds: km/h through a known homography within 2 %, image widths per second without."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.analytics.engine import CompiledScene, analyze_track
from cloud.analytics.events import Speed, WrongWay
from cloud.analytics.geometry import Track
from tests.analytics.scripts import (
    SECOND,
    box_at,
    calibration,
    camera_homography,
    project,
    scene,
    track,
)

FPS = 10
STEP_US = SECOND // FPS


def speed_of(compiled: CompiledScene, t: Track) -> Speed | None:
    found = [e for e in analyze_track(compiled, t) if isinstance(e, Speed)]
    return found[0] if found else None


def drive(
    h: np.ndarray, start: tuple[float, float], velocity_ms: tuple[float, float], seconds: float
) -> list[tuple[float, float]]:
    """Image reference points, FPS per second, of a vehicle driving on the ground."""
    steps = np.arange(round(seconds * FPS) + 1) / FPS
    ground = np.array(start) + steps[:, None] * np.array(velocity_ms)
    return [(float(u), float(v)) for u, v in project(h, ground)]


def test_known_scale_top_down() -> None:
    # a top-down view 40 m wide and 22.5 m high (16:9): ground = (40 x, 22.5 y)
    top_down = np.linalg.inv(np.diag([40.0, 22.5, 1.0]))  # ground -> image
    ground = [(0.0, 0.0), (40.0, 0.0), (40.0, 22.5), (0.0, 22.5), (20.0, 11.0)]
    s = scene(calibration=calibration(top_down, ground))
    points = drive(top_down, (2.0, 10.0), (10.0, 0.0), 3.0)  # 10 m/s = 36 km/h
    speed = speed_of(s, track(points, step_us=STEP_US))
    assert speed is not None
    assert speed.unit == "km/h"
    assert speed.value == pytest.approx(36.0, rel=0.02)


@pytest.mark.parametrize(
    ("start", "velocity"),
    [
        ((1.75, 10.0), (0.0, 50 / 3.6)),  # 50 km/h straight away from the camera
        ((1.75, 45.0), (0.0, -50 / 3.6)),  # towards it
        ((-6.0, 12.0), (50 / 3.6 * 0.6, 50 / 3.6 * 0.8)),  # obliquely
    ],
)
def test_perspective_camera_speed_within_two_percent(
    start: tuple[float, float], velocity: tuple[float, float]
) -> None:
    h = camera_homography()
    ground = [(-3.5, 10.0), (3.5, 10.0), (-3.5, 40.0), (3.5, 40.0), (0.0, 25.0)]
    s = scene(calibration=calibration(h, ground))
    speed = speed_of(s, track(drive(h, start, velocity, 2.5), step_us=STEP_US))
    assert speed is not None
    assert speed.value == pytest.approx(50.0, rel=0.02)
    assert speed.segments == 5  # 2.5 s in segments of 0.5 s


def test_perspective_speed_with_jitter_and_an_outlier() -> None:
    h = camera_homography()
    ground = [(-3.5, 10.0), (3.5, 10.0), (-3.5, 40.0), (3.5, 40.0), (0.0, 25.0)]
    s = scene(calibration=calibration(h, ground), speed_min_segment_s=1.0)
    points = np.array(drive(h, (1.75, 10.0), (0.0, 50 / 3.6), 6.0))
    rng = np.random.default_rng(7)
    points += rng.uniform(-0.5, 0.5, points.shape) / np.array([1920, 1080])  # +-half a pixel
    points[31] += (0.0, 0.05)  # one bad box
    speed = speed_of(s, track([tuple(p) for p in points], step_us=STEP_US))
    assert speed is not None
    assert speed.value == pytest.approx(50.0, rel=0.02)


def test_without_calibration_speed_is_in_image_widths_per_second() -> None:
    s = scene()
    across = track([(0.1 + 0.02 * k, 0.5) for k in range(31)], step_us=STEP_US)  # 0.2 / s
    speed = speed_of(s, across)
    assert speed is not None
    assert speed.unit == "image_widths/s"
    assert speed.value == pytest.approx(0.2, rel=1e-9)
    # 0.2 of the height per second on a 16:9 frame is 0.2 * 9 / 16 widths per second
    down = track([(0.5, 0.1 + 0.02 * k) for k in range(31)], step_us=STEP_US)
    speed = speed_of(s, down)
    assert speed is not None
    assert speed.value == pytest.approx(0.2 * 9 / 16, rel=1e-9)


def test_speed_reference_point_is_the_bottom_centre() -> None:
    # a box that grows upward while its bottom edge stays put is not moving
    s = scene()
    boxes = [(i * STEP_US, (0.4, 0.5 - 0.01 * i, 0.5, 0.6)) for i in range(20)]
    speed = speed_of(s, Track("t", boxes, 2))
    assert speed is not None
    assert speed.value == 0.0


def test_no_speed_for_a_track_shorter_than_a_segment() -> None:
    s = scene()
    assert speed_of(s, track([(0.1, 0.5), (0.2, 0.5)], step_us=STEP_US)) is None
    assert speed_of(s, track([(0.1, 0.5)])) is None


def test_points_beyond_the_horizon_are_ignored() -> None:
    h = camera_homography()
    ground = [(-3.5, 10.0), (3.5, 10.0), (-3.5, 40.0), (3.5, 40.0), (0.0, 25.0)]
    s = scene(calibration=calibration(h, ground))
    points = drive(h, (1.75, 10.0), (0.0, 50 / 3.6), 3.0)
    sky = [(0.5, 0.05)] * 5  # above the horizon (v = 0.128)
    t = track(points + sky, step_us=STEP_US)
    speed = speed_of(s, t)
    assert speed is not None
    assert speed.value == pytest.approx(50.0, rel=0.02)
    assert speed.at_us == 30 * STEP_US  # the last ground sample


def test_wrong_way_in_metres_with_a_calibration() -> None:
    h = camera_homography()
    ground = [(-3.5, 10.0), (3.5, 10.0), (-3.5, 40.0), (3.5, 40.0), (0.0, 25.0)]
    lane = project(h, np.array([(0.0, 10.0), (3.5, 10.0), (3.5, 50.0), (0.0, 50.0)]))
    heading = project(h, np.array([(1.75, 10.0), (1.75, 40.0)]))
    zone = {"polygon": lane.tolist(), "direction": heading.tolist(), "wrong_way_min_distance": 5}
    s = scene(calibration=calibration(h, ground), zones={"lane": zone})
    # towards the camera at 10 m/s from 45 m: enters the lane (50 m) before the track starts,
    # so the stay begins at the first sample; 5 m back takes 0.5 s
    towards = track(drive(h, (1.75, 45.0), (0.0, -10.0), 2.0), step_us=STEP_US)
    (wrong,) = [e for e in analyze_track(s, towards) if isinstance(e, WrongWay)]
    assert wrong.unit == "m"
    assert wrong.at_us == pytest.approx(SECOND // 2, abs=1)
    away = track(drive(h, (1.75, 12.0), (0.0, 10.0), 2.0), step_us=STEP_US)
    assert not any(isinstance(e, WrongWay) for e in analyze_track(s, away))


def test_box_helper_puts_the_reference_point_where_asked() -> None:
    x1, _, x2, y2 = box_at(0.3, 0.7)
    assert ((x1 + x2) / 2, y2) == pytest.approx((0.3, 0.7))
