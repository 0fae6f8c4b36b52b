"""What the analytics engine reports about one track: events with deterministic identities.

Every event has a :class:`EventKey` (track, kind, subject, ordinal). For line crossings the
ordinal counts that line's crossings by that track in time order from 0 (both directions
together); for zone events it is the index of the stay in that zone (a stay's entry, exit and
incidents share it); speed has ordinal 0. The engine only
reports an event once the track's samples settle it, and a later sample never changes an event
whose moment lies before it, so re-processing a track, or a longer version of it, yields the
same keys and values for the events already seen (a store upserts by key and never counts
twice). :class:`Speed` is the exception: a per-track measurement with one key whose value is
recomputed from the whole track each time.

Times are microseconds since the Unix epoch, as in the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cloud.analytics.scene import DistanceUnit, SpeedUnit

EventKind = Literal[
    "line_crossing", "zone_entry", "zone_exit", "speed", "stopped_vehicle", "wrong_way"
]
CrossingDirection = Literal["in", "out"]


@dataclass(frozen=True, slots=True, order=True)
class EventKey:
    """The identity of an event; ``str(key)`` is ``track/kind/subject/ordinal``."""

    track: str
    kind: EventKind
    subject: str
    """The line's or zone's name; empty for per-track events (speed)."""
    ordinal: int
    """The crossing's index (lines), the stay's index (zones), 0 (speed)."""

    def __str__(self) -> str:
        return f"{self.track}/{self.kind}/{self.subject}/{self.ordinal}"


@dataclass(frozen=True, slots=True)
class LineCrossing:
    """The track's reference point went from strictly one side of the line to the other."""

    key: EventKey
    at_us: int
    """When it left the line for the other side (interpolated between samples)."""
    scene_version: str
    line: str
    direction: CrossingDirection


@dataclass(frozen=True, slots=True)
class ZoneEntry:
    key: EventKey
    at_us: int
    scene_version: str
    zone: str
    crossed: bool
    """False when the track began inside the zone (``at_us`` is then its first sample and any
    dwell measured from it a lower bound)."""


@dataclass(frozen=True, slots=True)
class ZoneExit:
    key: EventKey
    at_us: int
    scene_version: str
    zone: str
    entered_us: int
    """The matching entry's moment."""
    dwell_us: int
    """``at_us - entered_us``."""
    crossed: bool
    """False when the track ended inside the zone (``at_us`` is then its last sample)."""


@dataclass(frozen=True, slots=True)
class Speed:
    """The track's typical speed: the median of its segment speeds (see :mod:`.speed`)."""

    key: EventKey
    at_us: int
    """The last sample the measurement used."""
    scene_version: str
    value: float
    unit: SpeedUnit
    segments: int
    """How many segments the median is over."""


@dataclass(frozen=True, slots=True)
class StoppedVehicle:
    """A vehicle stayed in a zone where stopping is not expected for ``stopped_after_s``."""

    key: EventKey
    at_us: int
    """The moment the stay reached the threshold (``since_us + stopped_after_s``)."""
    scene_version: str
    zone: str
    since_us: int
    """When the stay began (its zone entry)."""


@dataclass(frozen=True, slots=True)
class WrongWay:
    """Inside a zone, the track moved against the zone's allowed direction by at least the
    zone's minimum distance (measured along that direction)."""

    key: EventKey
    at_us: int
    """The moment the backward movement reached the minimum distance."""
    scene_version: str
    zone: str
    distance: float
    """The minimum distance that was reached (the zone's threshold)."""
    unit: DistanceUnit


Event = LineCrossing | ZoneEntry | ZoneExit | Speed | StoppedVehicle | WrongWay
