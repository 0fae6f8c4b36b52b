"""Scene files: validation with precise errors, loading YAML and JSON, the version hash."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from cloud.analytics.engine import compile_scene
from cloud.analytics.scene import Scene, SceneError, load_scene, parse_scene
from tests.analytics.scripts import FRAME, calibration, camera_homography

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "scenes" / "example.yaml"
GROUND = [(-3.5, 10.0), (3.5, 10.0), (-3.5, 40.0), (3.5, 40.0), (0.0, 25.0)]


def errors_of(**parts: Any) -> str:
    with pytest.raises(SceneError) as caught:
        parse_scene({"frame": FRAME, **parts})
    return str(caught.value)


def test_example_scene_validates_and_compiles() -> None:
    scene = load_scene(EXAMPLE)
    assert set(scene.lines) == {"count_north"}
    assert set(scene.zones) == {"junction_box", "northbound"}
    assert scene.speed_unit == "km/h"
    assert scene.distance_unit == "m"
    compiled = compile_scene(scene)
    assert compiled.version == scene.version
    # the lane's heading points away from the camera: +Y on the ground
    (lane,) = [z for z in compiled.zones if z.name == "northbound"]
    assert lane.heading is not None
    assert lane.heading[1] > 0.99


def test_readme_example_validates() -> None:
    text = (EXAMPLE.parent / "README.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", text, re.S)
    scene = parse_scene(yaml.safe_load(block))
    assert set(scene.zones) == {"junction_box", "northbound"}


def test_yaml_and_json_give_the_same_scene(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(data))
    assert load_scene(path) == load_scene(EXAMPLE)
    assert load_scene(path).version == load_scene(EXAMPLE).version


def test_degenerate_line() -> None:
    text = errors_of(lines={"a": {"points": [[0.1, 0.5], [0.1, 0.5]]}})
    assert text == "invalid scene: lines.a.points: points 0 and 1 are the same point (0.1, 0.5)"
    text = errors_of(lines={"a": {"points": [[0.1, 0.5]]}})
    assert "lines.a.points: List should have at least 2 items" in text
    text = errors_of(lines={"a": {"points": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}})
    assert "lines.a.points: the line crosses or retraces itself" in text


def test_self_intersecting_polygon() -> None:
    bow_tie = [[0.2, 0.2], [0.8, 0.8], [0.8, 0.2], [0.2, 0.8]]
    text = errors_of(zones={"z": {"polygon": bow_tie}})
    assert text == (
        "invalid scene: zones.z.polygon: the polygon is not simple: it intersects itself "
        "at (0.5, 0.5)"
    )
    flat = [[0.2, 0.2], [0.5, 0.2], [0.8, 0.2]]
    assert "zones.z.polygon:" in errors_of(zones={"z": {"polygon": flat}})
    assert "at least 3 items" in errors_of(zones={"z": {"polygon": [[0.2, 0.2], [0.5, 0.5]]}})


def test_closing_point_is_optional() -> None:
    ring = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]
    closed = parse_scene({"frame": FRAME, "zones": {"z": {"polygon": [*ring, ring[0]]}}})
    open_ = parse_scene({"frame": FRAME, "zones": {"z": {"polygon": ring}}})
    assert closed.version == open_.version


def test_points_must_be_normalised_and_names_safe() -> None:
    text = errors_of(lines={"a": {"points": [[0.1, 1.5], [0.2, 0.5]]}})
    assert "lines.a.points.0.1: Input should be less than or equal to 1" in text
    assert "lines.a b.[key]: String should match pattern" in errors_of(
        lines={"a b": {"points": [[0.1, 0.5], [0.2, 0.5]]}}
    )


def test_unknown_keys_are_errors() -> None:
    text = errors_of(lines={"a": {"points": [[0.1, 0.5], [0.2, 0.5]], "in": "left_to_right"}})
    assert text == "invalid scene: lines.a.in: Extra inputs are not permitted"
    assert "zone: Extra inputs" in errors_of(zone={})


def test_zone_rule_combinations() -> None:
    square = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]
    assert "zones.z: stopped_after_s needs stopping_expected: false" in errors_of(
        zones={"z": {"polygon": square, "stopped_after_s": 5}}
    )
    assert "zones.z: wrong_way_min_distance needs a direction" in errors_of(
        zones={"z": {"polygon": square, "wrong_way_min_distance": 5}}
    )
    assert "zones.z.direction: the two points of a direction must differ" in errors_of(
        zones={"z": {"polygon": square, "direction": [[0.5, 0.5], [0.5, 0.5]]}}
    )
    assert "give both slow_below and jammed_below, or neither" in errors_of(
        zones={"z": {"polygon": square, "congestion": {"slow_below": 10}}}
    )


def test_fewer_than_four_calibration_points() -> None:
    cal = calibration(camera_homography(), GROUND[:3])
    assert "calibration.points: List should have at least 4 items after validation, not 3" in (
        errors_of(calibration=cal)
    )


def test_collinear_calibration_points() -> None:
    ground = [(0.0, 10.0), (0.0, 20.0), (0.0, 30.0), (0.0, 40.0), (0.0, 50.0)]
    text = errors_of(calibration=calibration(camera_homography(), ground))
    assert text.startswith("invalid scene: calibration: degenerate calibration: the image")
    assert "collinear" in text
    # three of four on one line is as degenerate
    three = [(0.0, 10.0), (0.0, 20.0), (0.0, 30.0), (3.0, 10.0)]
    assert "degenerate calibration" in errors_of(
        calibration=calibration(camera_homography(), three)
    )


def test_calibration_with_a_wrong_point() -> None:
    cal = calibration(camera_homography(), GROUND)
    cal["points"][4]["ground"] = [2.0, 25.0]  # mis-measured by 2 m
    text = errors_of(calibration=cal)
    assert "calibration: reprojection error of point" in text
    assert "above max_error_m 0.5" in text


def test_direction_beyond_the_horizon() -> None:
    cal = calibration(camera_homography(), GROUND)
    zone = {"polygon": [[0.4, 0.5], [0.6, 0.5], [0.6, 0.9]], "direction": [[0.5, 0.9], [0.5, 0.05]]}
    assert "zones.lane.direction: a point lies beyond the calibration's horizon" in errors_of(
        calibration=cal, zones={"lane": zone}
    )


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "scene.yaml"
    path.write_text("frame: {width: 10, height: 10}\nlines: {}\nlines: {}\n")
    with pytest.raises(SceneError, match="duplicate key 'lines'"):
        load_scene(path)
    path = tmp_path / "scene.json"
    path.write_text('{"frame": {"width": 10, "height": 10}, "zones": {}, "zones": {}}')
    with pytest.raises(SceneError, match="duplicate key 'zones'"):
        load_scene(path)


def test_yaml_anchors_may_be_merged_and_overridden(tmp_path: Path) -> None:
    path = tmp_path / "scene.yaml"
    path.write_text(
        "frame: {width: 16, height: 9}\n"
        "zones:\n"
        "  a: &base {polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]], stopping_expected: false}\n"
        "  b: {<<: *base, stopping_expected: true}\n"
    )
    zones = load_scene(path).zones
    assert (zones["a"].stopping_expected, zones["b"].stopping_expected) == (False, True)
    assert zones["a"].polygon == zones["b"].polygon


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="cannot read scene file"):
        load_scene(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SceneError, match="must hold a mapping"):
        load_scene(tmp_path / "list.yaml")


def _reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def test_version_is_stable_under_key_order_and_spelling() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    base = parse_scene(data).version
    assert len(base) == 16
    assert parse_scene(_reordered(data)).version == base
    # numbers spelled differently, defaults written out
    respelled = json.loads(json.dumps(data).replace("20,", "20.0,"))
    respelled["speed_min_segment_s"] = 0.5
    respelled["lines"]["count_north"]["points"][0] = [0.2, 0.5060]
    assert parse_scene(respelled).version == base


def test_version_changes_with_content() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    base = parse_scene(data).version
    moved = json.loads(json.dumps(data))
    moved["lines"]["count_north"]["points"][0] = [0.21, 0.506]
    renamed = json.loads(json.dumps(data))
    renamed["zones"]["lane"] = renamed["zones"].pop("northbound")
    flipped = json.loads(json.dumps(data))
    flipped["lines"]["count_north"]["direction"] = "left_to_right"
    versions = {parse_scene(d).version for d in (moved, renamed, flipped)}
    assert base not in versions
    assert len(versions) == 3


def test_scene_model_is_frozen() -> None:
    scene = load_scene(EXAMPLE)
    assert isinstance(scene, Scene)
    with pytest.raises(ValueError, match="frozen"):
        scene.description = "changed"  # type: ignore[misc]
    assert np.isfinite(scene.aspect)
