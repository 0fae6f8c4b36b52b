"""A camera's scene: counting lines, zones and an optional ground calibration (YAML or JSON).

Every point is in normalised image coordinates: x and y in [0, 1] of the frame's width and
height, origin top-left, y growing downward (as the boxes of ``tracks.path`` and
``detections``). The frame size (``frame``) gives the aspect that makes image distances and
directions meaningful without a calibration.

- ``lines``: named polylines of two or more points. Stand on the line's first point and look
  towards the next one, the image shown as usual (y down): *left* and *right* are your left
  and right hand. ``direction`` says which crossing counts as ``in``: ``left_to_right``
  (default) or ``right_to_left``; the other way is ``out``. For a line drawn left to right
  across the image, ``left_to_right`` is moving down the image.
- ``zones``: named simple polygons (three or more points). ``direction`` is the allowed
  heading, from its first point to its second (moving against it is wrong-way);
  ``stopping_expected: false`` makes a vehicle staying ``stopped_after_s`` a stopped-vehicle
  incident; ``congestion`` tunes the congestion rule (:mod:`cloud.analytics.congestion`).
- ``calibration``: four or more image points with their ground positions in metres (any
  flat, right-angled frame on the road plane): speeds in km/h and distances in metres.
  Without it, speeds are in image widths per second and distances in image widths.

:attr:`Scene.version` is a hash of the normalised scene (defaults filled in, keys sorted), so
an event can say which scene produced it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import shapely
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from shapely.geometry import LineString, Polygon

from cloud.analytics.calibration import MAX_POINTS, GroundMap, solve_ground_map
from shared import settings

SpeedUnit = Literal["km/h", "image_widths/s"]
DistanceUnit = Literal["m", "image_widths"]


class SceneError(ValueError):
    """A scene file that cannot be read or does not validate; the message names each field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(value: float) -> float:
    if not np.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Unit = Annotated[float, Field(ge=0.0, le=1.0)]
ImagePoint = tuple[Unit, Unit]
"""(x, y) normalised to [0, 1] of the frame."""
Metres = Annotated[float, AfterValidator(_finite)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
"""Line and zone names: letters, digits, ``_.-``; they appear in event identities."""


def _fmt(point: tuple[float, float]) -> str:
    return f"({point[0]:.4g}, {point[1]:.4g})"


def _distinct_neighbours(points: list[tuple[float, float]], closed: bool) -> None:
    pairs = list(itertools.pairwise(points))
    if closed:
        pairs.append((points[-1], points[0]))
    for i, (a, b) in enumerate(pairs):
        if a == b:
            j = (i + 1) % len(points)
            raise ValueError(f"points {i} and {j} are the same point {_fmt(a)}")


class FrameSize(_Model):
    """The frame the normalised coordinates refer to, in pixels (only its aspect matters)."""

    width: int = Field(gt=0, le=100_000)
    height: int = Field(gt=0, le=100_000)


class LineSpec(_Model):
    """A counting line (polyline); see the module docstring for sides and ``direction``."""

    points: list[ImagePoint] = Field(min_length=2, max_length=64)
    direction: Literal["left_to_right", "right_to_left"] = Field(
        "left_to_right", description="The crossing direction that counts as 'in'."
    )
    description: str = ""

    @field_validator("points")
    @classmethod
    def _simple(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        _distinct_neighbours(points, closed=False)
        line = LineString(points)
        if not line.is_simple:
            raise ValueError("the line crosses or retraces itself (sides would be ambiguous)")
        return points


class CongestionRule(_Model):
    """Thresholds of the congestion level (:mod:`cloud.analytics.congestion`); speeds in the
    scene's speed unit (km/h with a calibration, image widths per second without); give both
    speeds or neither (that unit's defaults)."""

    min_occupancy: float = Field(
        2.0, ge=0, description="Mean vehicles present below which traffic is free anyway."
    )
    slow_below: float | None = Field(None, gt=0, description="Mean speed below which: slow.")
    jammed_below: float | None = Field(None, gt=0, description="Mean speed below: jammed.")

    @model_validator(mode="after")
    def _ordered(self) -> CongestionRule:
        if (self.slow_below is None) != (self.jammed_below is None):
            raise ValueError("give both slow_below and jammed_below, or neither")
        if (
            self.slow_below is not None
            and self.jammed_below is not None
            and self.jammed_below >= self.slow_below
        ):
            raise ValueError("jammed_below must be below slow_below")
        return self


class ZoneSpec(_Model):
    """A zone (simple polygon) with its optional rules."""

    polygon: list[ImagePoint] = Field(min_length=3, max_length=256)
    direction: tuple[ImagePoint, ImagePoint] | None = Field(
        None, description="Allowed heading, from the first point towards the second."
    )
    wrong_way_min_distance: float | None = Field(
        None,
        gt=0,
        description="Movement against `direction` that makes a wrong-way incident, in metres "
        "with a calibration, image widths without (default 5 m or 0.05 widths).",
    )
    stopping_expected: bool = True
    stopped_after_s: float | None = Field(
        None,
        gt=0,
        description="Stay of a vehicle that is an incident where stopping is not expected "
        "(default 30 s).",
    )
    congestion: CongestionRule = CongestionRule()
    description: str = ""

    @field_validator("polygon")
    @classmethod
    def _valid(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        ring = points[:-1] if len(points) > 3 and points[0] == points[-1] else points
        _distinct_neighbours(ring, closed=True)
        reason = shapely.is_valid_reason(Polygon(ring))
        if reason != "Valid Geometry":
            where = reason.partition("[")[2].rstrip("]").split()
            at = f" at ({where[0]}, {where[1]})" if len(where) == 2 else ""
            what = "intersects itself" if reason.startswith("Self-intersection") else reason
            raise ValueError(f"the polygon is not simple: it {what}{at}")
        if Polygon(ring).area <= 1e-12:
            raise ValueError("the polygon has no area")
        return ring

    @field_validator("direction")
    @classmethod
    def _heading(
        cls, value: tuple[tuple[float, float], tuple[float, float]] | None
    ) -> tuple[tuple[float, float], tuple[float, float]] | None:
        if value is not None and value[0] == value[1]:
            raise ValueError("the two points of a direction must differ")
        return value

    @model_validator(mode="after")
    def _rules(self) -> ZoneSpec:
        if self.stopped_after_s is not None and self.stopping_expected:
            raise ValueError("stopped_after_s needs stopping_expected: false")
        if self.wrong_way_min_distance is not None and self.direction is None:
            raise ValueError("wrong_way_min_distance needs a direction")
        return self


class CalibrationPoint(_Model):
    image: ImagePoint
    ground: tuple[Metres, Metres] = Field(description="Position on the road plane, metres.")


class Calibration(_Model):
    """Image points with their measured ground positions; solved as a homography."""

    points: list[CalibrationPoint] = Field(min_length=4, max_length=MAX_POINTS)
    max_error_m: float = Field(
        0.5, gt=0, description="Largest reprojection error accepted (tested from 5 points)."
    )
    _ground: GroundMap | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _solve(self) -> Calibration:
        image = np.array([p.image for p in self.points], dtype=np.float64)
        ground = np.array([p.ground for p in self.points], dtype=np.float64)
        # CalibrationError is a ValueError: pydantic reports it at `calibration`.
        self._ground = solve_ground_map(image, ground, self.max_error_m)
        return self

    @property
    def ground_map(self) -> GroundMap:
        assert self._ground is not None
        return self._ground


class Scene(_Model):
    """A camera's scene; build it with :func:`parse_scene` or :func:`load_scene`."""

    frame: FrameSize
    lines: dict[Name, LineSpec] = Field(default_factory=dict)
    zones: dict[Name, ZoneSpec] = Field(default_factory=dict)
    calibration: Calibration | None = None
    speed_min_segment_s: float = Field(
        0.5, gt=0, description="Shortest time between two samples a speed is measured over."
    )
    description: str = ""
    _version: str = PrivateAttr("")

    @model_validator(mode="after")
    def _headings_on_ground(self) -> Scene:
        if self.calibration is None:
            return self
        for name, zone in self.zones.items():
            if zone.direction is None:
                continue
            _, valid = self.calibration.ground_map.to_ground(np.array(zone.direction))
            if not valid.all():
                raise ValueError(
                    f"zones.{name}.direction: a point lies beyond the calibration's horizon"
                )
        return self

    @model_validator(mode="after")
    def _hash(self) -> Scene:
        normal = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), allow_nan=False
        )
        self._version = hashlib.sha256(normal.encode()).hexdigest()[:16]
        return self

    @property
    def version(self) -> str:
        """16 hex digits of the SHA-256 of the normalised scene (defaults filled, keys sorted):
        equal for equal content whatever the key order or number spelling."""
        return self._version

    @property
    def aspect(self) -> float:
        """Frame height over width: an image width is 1, an image height this much."""
        return self.frame.height / self.frame.width

    @property
    def speed_unit(self) -> SpeedUnit:
        return "km/h" if self.calibration is not None else "image_widths/s"

    @property
    def distance_unit(self) -> DistanceUnit:
        return "m" if self.calibration is not None else "image_widths"


def parse_scene(data: Mapping[str, Any], source: str = "scene") -> Scene:
    """Validate a scene from plain data; :class:`SceneError` lists every problem by field."""
    try:
        return Scene.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**err, "msg": str(err["ctx"]["error"])}
            if err["type"] == "value_error" and "error" in err.get("ctx", {})
            else err
            for err in exc.errors()
        ]
        raise SceneError(f"invalid {source}: {settings.describe_errors(errors)}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice (PyYAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: merged keys may be overridden
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise SceneError(f"duplicate key {twice[0]!r}")
    return dict(pairs)


def load_scene(path: Path) -> Scene:
    """A scene from a ``.json`` file, or YAML (any other suffix)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SceneError(f"cannot read scene file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=_duplicate_keys)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.MarkedYAMLError as exc:  # one line: what is wrong, and where
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        raise SceneError(f"scene file {path} cannot be parsed: {what}{where}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise SceneError(f"scene file {path} cannot be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise SceneError(f"scene file {path} must hold a mapping at the top level")
    return parse_scene(data, source=f"scene file {path}")
