"""A zone's congestion per time window, from the zone stays the runner stored.

Windows are ``analytics.congestion_window_s`` long and aligned to the Unix epoch: the window
starting at ``s`` is ``[s, s + w)`` in capture time (us), ``s`` a multiple of ``w``. For one
zone and window (:func:`compute`):

- **present**: the zone's stays of vehicles (COCO bicycle, car, motorcycle, bus, truck, by
  the rows' ``class_id``, which is the track's current class) that overlap the window by a
  positive time. A stay is a ``zone_entry`` row of ``analytics_events`` with the
  ``zone_exit`` of the same track, zone and ordinal. A stay without an exit yet (its track is
  in progress) lasts until the track's last sighting (``tracks.last_seen_us``), not to the
  window's end: only what was seen counts, and a later sighting changes the track, which makes
  the runner compute the windows it reaches again. A stay counts in a window only if it began
  at most ``congestion_max_stay_s`` before the window starts (this bounds what a window reads;
  a vehicle parked longer stops counting then);
- **occupancy**: :func:`.congestion.occupancy` of those stays (vehicles on average);
- **mean speed**: :func:`.congestion.mean_speed` of the ``speed`` rows of their tracks (each
  track's median speed over its path, :mod:`.speed`) measured in the scene's speed unit;
- **vehicles**: how many distinct tracks are present;
- **level**: :func:`.congestion.congestion_level` with the zone's thresholds.

Stays count by zone name, whichever scene version found them (a track keeps the scene it
began with; see :mod:`.runner`). Which windows a changed track *touches* (:func:`touched`):
those its stays (before and after the change) overlap, so late data (an edge draining its
spool) brings past windows up to date.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, and_, select

from cloud.analytics.congestion import (
    CongestionLevel,
    CongestionThresholds,
    congestion_level,
    mean_speed,
    occupancy,
)
from cloud.analytics.store import EventRow
from cloud.describe.schema import VEHICLES
from cloud.schema import analytics_events, tracks

_IN_CHUNK: Final = 500
#: Windows further apart than this are read separately (a late track and the live ones).
_RUN_GAP_WINDOWS: Final = 30


@dataclass(frozen=True)
class WindowSpec:
    """The windows' length and the longest stay a window counts, both in microseconds."""

    window_us: int
    max_stay_us: int

    def start(self, t_us: int) -> int:
        """The start of the window holding ``t_us``."""
        return t_us // self.window_us * self.window_us


@dataclass(frozen=True)
class Stay:
    """A vehicle's presence in a zone, ``[entry_us, end_us)``."""

    track_id: int
    entry_us: int
    end_us: int


@dataclass(frozen=True)
class Figures:
    """One window of one zone."""

    occupancy: float
    """Vehicles present on average over the window."""
    mean_speed: float | None
    """In the scene's speed unit; None without any present vehicle's speed in that unit."""
    vehicles: int
    level: CongestionLevel


def touched(rows: Iterable[EventRow], last_us: int, spec: WindowSpec) -> dict[str, set[int]]:
    """Zone -> the starts of the windows the stays among one track's event ``rows`` overlap;
    a stay without an exit row lasts until ``last_us`` (the track's last sighting)."""
    entries: dict[tuple[str, int], int] = {}
    exits: dict[tuple[str, int], int] = {}
    for r in rows:
        if r.kind == "zone_entry":
            entries[(r.subject, r.ordinal)] = r.at_us
        elif r.kind == "zone_exit":
            exits[(r.subject, r.ordinal)] = r.at_us
            entries.setdefault((r.subject, r.ordinal), int(r.details.get("entered_us", r.at_us)))
    out: dict[str, set[int]] = defaultdict(set)
    for (zone, ordinal), entry in entries.items():
        end = exits.get((zone, ordinal), max(entry, last_us))
        end = min(end, entry + spec.max_stay_us + spec.window_us)  # no window counts it later
        out[zone].update(range(spec.start(entry), end + 1, spec.window_us))
    return dict(out)


def read_stays(conn: Connection, camera_id: int, zone: str, lo_us: int, hi_us: int) -> list[Stay]:
    """The vehicle stays in ``zone`` that began in ``[lo_us, hi_us)``."""
    entry, exit_ = analytics_events.alias("entry"), analytics_events.alias("exit")
    rows = conn.execute(
        select(entry.c.track_id, entry.c.at_us, exit_.c.at_us, tracks.c.last_seen_us)
        .select_from(
            entry.outerjoin(
                exit_,
                and_(
                    exit_.c.track_id == entry.c.track_id,
                    exit_.c.kind == "zone_exit",
                    exit_.c.subject == entry.c.subject,
                    exit_.c.ordinal == entry.c.ordinal,
                ),
            ).outerjoin(tracks, tracks.c.id == entry.c.track_id)
        )
        .where(
            entry.c.camera_id == camera_id,
            entry.c.kind == "zone_entry",
            entry.c.subject == zone,
            entry.c.at_us >= lo_us,
            entry.c.at_us < hi_us,
            entry.c.class_id.in_(sorted(VEHICLES)),
        )
    )
    out = []
    for track_id, entry_us, exit_us, last_seen_us in rows:
        if exit_us is None:  # in progress: until its last sighting (a deleted track: none)
            exit_us = entry_us if last_seen_us is None else max(entry_us, last_seen_us)
        out.append(Stay(int(track_id), int(entry_us), int(exit_us)))
    return out


def read_speeds(conn: Connection, track_ids: Iterable[int], unit: str) -> dict[int, float]:
    """Each track's stored speed measured in ``unit`` (tracks without one are left out)."""
    ids = sorted(set(track_ids))
    e = analytics_events.c
    out: dict[int, float] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        for track_id, value in conn.execute(
            select(e.track_id, e.value).where(
                e.kind == "speed",
                e.unit == unit,
                e.value.is_not(None),
                e.track_id.in_(ids[start : start + _IN_CHUNK]),
            )
        ):
            out[int(track_id)] = float(value)
    return out


def figures(
    stays: Sequence[Stay],
    speeds: dict[int, float],
    start_us: int,
    spec: WindowSpec,
    thresholds: CongestionThresholds,
) -> Figures:
    """The figures of the window starting at ``start_us`` (module docstring)."""
    end_us = start_us + spec.window_us
    present = [
        s
        for s in stays
        if s.entry_us >= start_us - spec.max_stay_us
        and min(s.end_us, end_us) > max(s.entry_us, start_us)
    ]
    occ = occupancy(((s.entry_us, s.end_us) for s in present), start_us, end_us)
    ids = {s.track_id for s in present}
    speed = mean_speed(speeds[t] for t in sorted(ids) if t in speeds)
    return Figures(occ, speed, len(ids), congestion_level(occ, speed, thresholds))


def _runs(starts: Sequence[int], spec: WindowSpec) -> list[list[int]]:
    """Sorted window starts cut where they lie far apart (each run is read at once)."""
    runs: list[list[int]] = []
    for s in sorted(set(starts)):
        if runs and s - runs[-1][-1] <= _RUN_GAP_WINDOWS * spec.window_us:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def compute(
    conn: Connection,
    camera_id: int,
    zone: str,
    thresholds: CongestionThresholds,
    starts: Iterable[int],
    spec: WindowSpec,
) -> dict[int, Figures]:
    """The figures of ``zone`` in each window of ``starts``."""
    out: dict[int, Figures] = {}
    for run in _runs(list(starts), spec):
        stays = read_stays(
            conn, camera_id, zone, run[0] - spec.max_stay_us, run[-1] + spec.window_us
        )
        speeds = read_speeds(conn, (s.track_id for s in stays), thresholds.unit)
        for start in run:
            out[start] = figures(stays, speeds, start, spec, thresholds)
    return out
