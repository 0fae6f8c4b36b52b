"""The analytics figures of a described window: what the LLM is shown and the rules say.

When the camera has a scene, :func:`cloud.describe.context.build_context` adds the window's
:class:`~cloud.analytics.queries.WindowFigures` (line crossings per line, direction and class;
zone entries; incidents; each track's measured speed). Speeds are in km/h when the scene is
calibrated and in image widths per second otherwise; every figure carries its unit, so a
reader never mistakes one for the other.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from cloud.analytics.queries import WindowFigures
from cloud.describe.schema import VEHICLES, class_name


def _cls(class_id: int | None) -> str:
    return "unknown" if class_id is None else class_name(class_id)


def median_speeds(
    figures: WindowFigures, classes: Mapping[int, int]
) -> dict[str, tuple[float, str, int]]:
    """Per class name: the median measured speed of the window's tracks, its unit and how
    many tracks it is over (``classes``: track id -> class id)."""
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    for track_id, (value, unit) in figures.speeds.items():
        if track_id in classes:
            by[(_cls(classes[track_id]), unit)].append(value)
    return {
        name: (statistics.median(values), unit, len(values))
        for (name, unit), values in sorted(by.items())
    }


def vehicle_speed(figures: WindowFigures, classes: Mapping[int, int]) -> tuple[float, str] | None:
    """The median measured speed of the window's vehicles and its unit (None: none)."""
    values: dict[str, list[float]] = defaultdict(list)
    for track_id, (value, unit) in figures.speeds.items():
        if classes.get(track_id) in VEHICLES:
            values[unit].append(value)
    if not values:
        return None
    unit, measured = max(values.items(), key=lambda kv: len(kv[1]))
    return statistics.median(measured), unit


def line_totals(figures: WindowFigures) -> dict[str, dict[str, int]]:
    """Per line: crossings per direction, every class together."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for (line, direction, _cls_id), n in sorted(figures.crossings.items(), key=str):
        out[line][direction] = out[line].get(direction, 0) + n
    return dict(out)


def prompt_figures(figures: WindowFigures, classes: Mapping[int, int], rel: Any) -> dict[str, Any]:
    """The ``analytics`` object of the LLM's metadata (``rel``: µs -> seconds from the
    window's start)."""
    unit = "km/h" if figures.calibrated else "image_widths/s"
    return {
        "scene_version": figures.scene_version,
        "calibrated": figures.calibrated,
        "speed_unit": unit,
        "line_crossings": [
            {"line": line, "direction": direction, "class": _cls(c), "count": n}
            for (line, direction, c), n in sorted(figures.crossings.items(), key=str)
        ],
        "zone_entries": [
            {"zone": zone, "class": _cls(c), "count": n}
            for (zone, c), n in sorted(figures.zone_entries.items(), key=str)
        ],
        "incidents": [
            {
                "kind": i.kind,
                "zone": i.subject,
                "track_id": i.track_id,
                "at_s": rel(i.at_us),
                "class": _cls(i.class_id),
            }
            for i in figures.incidents
        ],
        "median_speed_by_class": {
            name: {"value": round(value, 2), "unit": u, "tracks": n}
            for name, (value, u, n) in median_speeds(figures, classes).items()
        },
    }


def track_speed(figures: WindowFigures, track_id: int) -> dict[str, Any] | None:
    """A track's measured speed with its unit, for its entry in the metadata."""
    found = figures.speeds.get(track_id)
    return None if found is None else {"value": round(found[0], 2), "unit": found[1]}


def sentences(figures: WindowFigures, classes: Mapping[int, int]) -> Iterable[str]:
    """What the rules describer says about the figures (plain sentences)."""
    totals = line_totals(figures)
    if totals:
        parts = [
            f"{line} {', '.join(f'{n} {d}' for d, n in sorted(dirs.items()))}"
            for line, dirs in sorted(totals.items())
        ]
        yield f"Line crossings: {'; '.join(parts)}."
    speed = vehicle_speed(figures, classes)
    if speed is not None:
        value, unit = speed
        yield f"Median measured vehicle speed {value:.{0 if unit == 'km/h' else 2}f} {unit}."
