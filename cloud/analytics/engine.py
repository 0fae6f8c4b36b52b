"""The analytics engine: a scene and one track in, that track's events out (pure functions).

:func:`compile_scene` turns a validated :class:`~cloud.analytics.scene.Scene` into shapely
geometries and a metric plane once; :func:`analyze_track` applies it to a track:

- :class:`LineCrossing` for each crossing of each line (:mod:`.crossings`);
- :class:`ZoneEntry` / :class:`ZoneExit` (with its dwell) for each stay in each zone
  (:mod:`.zones`);
- :class:`StoppedVehicle` when a vehicle (COCO bicycle, car, motorcycle, bus, truck) stays
  ``stopped_after_s`` in a zone where stopping is not expected;
- :class:`WrongWay` when, inside a zone with a ``direction``, the track comes back against
  it by ``wrong_way_min_distance`` from the furthest point it had reached along it;
- :class:`Speed`, the track's median segment speed (:mod:`.speed`).

Identities (:class:`EventKey`): crossings are numbered in time order per line; zone events
carry the index of their stay in that zone (a stay's entry, exit and incidents share it);
speed is ordinal 0. Only settled events are reported: a crossing once the path has left the
line, an exit once the path has left the zone (or the track ended). So processing a track
again, or a longer version of it (samples added at its end), reports the same events again,
with the same keys and values, for every moment before the previous last sample, plus the new
ones; only the :class:`Speed` value is recomputed. A track's class is assumed not to change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon

from cloud.analytics.congestion import CongestionThresholds
from cloud.analytics.crossings import CountingLine, crossings
from cloud.analytics.events import (
    Event,
    EventKey,
    LineCrossing,
    Speed,
    StoppedVehicle,
    WrongWay,
    ZoneEntry,
    ZoneExit,
)
from cloud.analytics.geometry import BoolArray, FloatArray, Path, Track, at_us, track_path
from cloud.analytics.scene import Scene
from cloud.analytics.speed import track_speed
from cloud.analytics.zones import stays, stopped_moment, wrong_way_moment
from cloud.describe.schema import VEHICLES

#: Backward movement that makes a wrong-way incident where a zone leaves it unset, by unit.
DEFAULT_WRONG_WAY = {"m": 5.0, "image_widths": 0.05}
#: A vehicle's stay that is an incident where stopping is not expected, if unset.
DEFAULT_STOPPED_AFTER_S = 30.0


@dataclass(frozen=True, eq=False)
class CompiledZone:
    name: str
    polygon: Polygon
    heading: FloatArray | None
    """Unit vector of the allowed direction in the metric plane, if the zone has one."""
    wrong_way_min: float
    stopped_after_us: int | None
    """Set where stopping is not expected."""
    congestion: CongestionThresholds


@dataclass(frozen=True, eq=False)
class CompiledScene:
    """A scene ready for :func:`analyze_track` (build it with :func:`compile_scene`)."""

    scene: Scene
    lines: tuple[CountingLine, ...]
    zones: tuple[CompiledZone, ...]

    @property
    def version(self) -> str:
        return self.scene.version

    def to_plane(self, xy: FloatArray) -> tuple[FloatArray, BoolArray]:
        """Metric positions of normalised image points: ground metres with a calibration
        (False where beyond its horizon), else image widths (x, y times the aspect)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if self.scene.calibration is not None:
            return self.scene.calibration.ground_map.to_ground(xy)
        return xy * np.array([1.0, self.scene.aspect]), np.ones(len(xy), dtype=bool)


def compile_scene(scene: Scene) -> CompiledScene:
    """Geometries, headings and thresholds of a validated scene."""
    lines = tuple(
        CountingLine(name, np.array(spec.points, dtype=np.float64), spec.direction)
        for name, spec in scene.lines.items()
    )
    zones = []
    unit = scene.distance_unit
    partial = CompiledScene(scene, lines, ())
    for name, spec in scene.zones.items():
        heading = None
        if spec.direction is not None:
            ends, _ = partial.to_plane(np.array(spec.direction, dtype=np.float64))
            vector = ends[1] - ends[0]
            heading = vector / np.linalg.norm(vector)
        stopped = None
        if not spec.stopping_expected:
            seconds = spec.stopped_after_s or DEFAULT_STOPPED_AFTER_S
            stopped = round(seconds * 1e6)
        zones.append(
            CompiledZone(
                name=name,
                polygon=Polygon(spec.polygon),
                heading=heading,
                wrong_way_min=spec.wrong_way_min_distance or DEFAULT_WRONG_WAY[unit],
                stopped_after_us=stopped,
                congestion=CongestionThresholds.of(spec.congestion, scene.speed_unit),
            )
        )
    return CompiledScene(scene, lines, tuple(zones))


def _sort_key(event: Event) -> tuple[int, EventKey]:
    return event.at_us, event.key


def _zone_events(
    compiled: CompiledScene, zone: CompiledZone, track: Track, path: Path
) -> list[Event]:
    """Entries, exits and incidents of ``track`` in ``zone``; ordinal = the stay's index."""
    version, z = compiled.version, zone.name
    refined, zone_stays = stays(path, zone.polygon, track.ended)
    last_us = at_us(path.t[-1])
    vehicle = track.class_id in VEHICLES
    out: list[Event] = []
    for i, stay in enumerate(zone_stays):
        entry = EventKey(track.key, "zone_entry", z, i)
        out.append(ZoneEntry(entry, stay.entry_us, version, z, stay.entry_crossed))
        if stay.exit_us is not None:
            exit_ = EventKey(track.key, "zone_exit", z, i)
            dwell = stay.exit_us - stay.entry_us
            out.append(
                ZoneExit(exit_, stay.exit_us, version, z, stay.entry_us, dwell, stay.exit_crossed)
            )
        if zone.stopped_after_us is not None and vehicle:
            moment = stopped_moment(stay, last_us, zone.stopped_after_us)
            if moment is not None:
                stopped = EventKey(track.key, "stopped_vehicle", z, i)
                out.append(StoppedVehicle(stopped, moment, version, z, stay.entry_us))
        if zone.heading is not None:
            span = slice(stay.first, stay.last + 1)
            plane, valid = compiled.to_plane(refined.xy[span])
            times = refined.t[span][valid]
            moment = wrong_way_moment(times, plane[valid], zone.heading, zone.wrong_way_min)
            if moment is not None:
                wrong = EventKey(track.key, "wrong_way", z, i)
                unit = compiled.scene.distance_unit
                out.append(WrongWay(wrong, moment, version, z, zone.wrong_way_min, unit))
    return out


def _speed(compiled: CompiledScene, track: Track, path: Path) -> Speed | None:
    """The track's median segment speed in the scene's unit (ground points only)."""
    plane, valid = compiled.to_plane(path.xy)
    times = path.t[valid]
    measured = track_speed(times, plane[valid], compiled.scene.speed_min_segment_s * 1e6)
    if measured is None:
        return None
    value, segments, used = measured
    unit = compiled.scene.speed_unit
    value = value * 3.6 if unit == "km/h" else value  # m/s -> km/h
    key = EventKey(track.key, "speed", "", 0)
    return Speed(key, at_us(times[used]), compiled.version, value, unit, segments)


def analyze_track(compiled: CompiledScene, track: Track) -> list[Event]:
    """Every settled event of ``track`` in ``compiled``, ordered by moment then key."""
    path = track_path(track)
    if len(path) == 0:
        return []
    events: list[Event] = []
    for line in compiled.lines:
        for i, (moment, direction) in enumerate(crossings(path, line)):
            key = EventKey(track.key, "line_crossing", line.name, i)
            events.append(LineCrossing(key, moment, compiled.version, line.name, direction))
    for zone in compiled.zones:
        events += _zone_events(compiled, zone, track, path)
    speed = _speed(compiled, track, path)
    if speed is not None:
        events.append(speed)
    return sorted(events, key=_sort_key)
