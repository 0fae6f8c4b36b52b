"""The rule-based describer: the same structured output from metadata alone, no model.

Used when no LLM endpoint is configured; every description it makes is labelled ``rules``.
Its judgements are heuristics for a typical fixed road camera (thresholds in
:class:`RuleSettings`):

- counts: distinct tracks per class, or a higher peak per-frame count (untracked objects);
- density: vehicles in view at once, on average over the window (the larger of the edge's
  per-frame counts and the tracks' visible time / window length);
- speed: median apparent speed of the moving vehicles (image widths per second);
- congestion: ``standstill`` when most vehicles stand still, ``heavy`` / ``moderate`` by
  density (one level up when traffic is slow), ``light``, ``free``;
- incidents: each stopped vehicle (a vehicle track whose box centre stayed within
  ``stopped_max_move`` image widths for ``stopped_after_s`` or more), and a queue when
  ``queue_min`` vehicles stand still at once.

When the camera has an analytics scene, the scene's incidents in the window (stopped vehicles
in its zones, wrong-way drivers) are incidents too, and the summary gives the line crossings
and the vehicles' median measured speed (km/h when the scene is calibrated, labelled image
widths per second otherwise).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from cloud.describe.base import RULES, Described, Usage
from cloud.describe.context import DescribeContext, TrackFacts
from cloud.describe.figures import sentences
from cloud.describe.schema import (
    VEHICLES,
    ClassCounts,
    Congestion,
    Incident,
    IncidentKind,
    TrafficDescription,
    class_name,
    count_key,
)


@dataclass(frozen=True)
class RuleSettings:
    heavy_density: float = 12.0  # vehicles in view at once
    moderate_density: float = 6.0
    light_density: float = 1.5
    slow_speed: float = 0.05  # image widths per second: slower is "slow traffic"
    standstill_share: float = 0.6  # of the vehicles, standing still
    standstill_min: int = 3  # vehicles
    queue_min: int = 3  # stopped vehicles at once


_LEVELS = (
    Congestion.FREE,
    Congestion.LIGHT,
    Congestion.MODERATE,
    Congestion.HEAVY,
    Congestion.STANDSTILL,
)


def _plural(n: int, name: str) -> str:
    if n == 1:
        return f"1 {name}"
    return f"{n} {'people' if name == 'person' else name + ('es' if name == 'bus' else 's')}"


def _where(t: TrackFacts) -> str:
    x1, y1, x2, y2 = t.last_box
    horizontal = ("left", "centre", "right")[min(2, int((x1 + x2) / 2 * 3))]
    vertical = ("top", "middle", "bottom")[min(2, int((y1 + y2) / 2 * 3))]
    return (
        f"{vertical} {horizontal}" if (vertical, horizontal) != ("middle", "centre") else "centre"
    )


class RulesDescriber:
    """:class:`~cloud.describe.base.Describer` without a model (``describer="rules"``)."""

    name = RULES
    wants_images = False

    def __init__(self, settings: RuleSettings | None = None) -> None:
        self.settings = settings or RuleSettings()

    async def aclose(self) -> None:
        return None

    async def describe(self, context: DescribeContext, images: Mapping[int, bytes]) -> Described:
        return Described(self.describe_now(context), RULES, Usage(), 1, ())

    def describe_now(self, context: DescribeContext) -> TrafficDescription:
        """The description (synchronous: pure computation over the context)."""
        counts = dict.fromkeys(ClassCounts.model_fields, 0)
        for class_id, n in context.classes().items():
            counts[count_key(class_id)] += n
        vehicles = [t for t in context.tracks if t.class_id in VEHICLES]
        stopped = [t for t in vehicles if t.stopped]
        density = self._density(context, vehicles)
        moving = [t.speed for t in vehicles if t.speed is not None and not t.stopped]
        speed = statistics.median(moving) if moving else None
        congestion = self._congestion(len(vehicles), len(stopped), density, speed)
        incidents = [
            Incident(
                kind=IncidentKind.STOPPED_VEHICLE,
                description=f"A {class_name(t.class_id)} (track {t.id}) has stood still for "
                f"{t.still_s:.0f} s at the {_where(t)} of the picture.",
                track_ids=[t.id],
            )
            for t in stopped
        ]
        incidents += _scene_incidents(context, {t.id for t in stopped})
        if len(stopped) >= self.settings.queue_min:
            incidents.append(
                Incident(
                    kind=IncidentKind.QUEUE,
                    description=f"{len(stopped)} vehicles are standing still: a queue.",
                    track_ids=[t.id for t in stopped][:100],
                )
            )
        summary = self._summary(context, counts, congestion, density, speed, len(stopped))
        return TrafficDescription(
            counts=ClassCounts(**counts),
            congestion=congestion,
            incidents=incidents,
            summary=summary,
        )

    def _density(self, context: DescribeContext, vehicles: list[TrackFacts]) -> float:
        from_counts = sum(f.mean for c, f in context.frame_counts.items() if c in VEHICLES)
        seconds = context.window.duration_s
        visible = sum((t.last_us - t.first_us) / 1e6 for t in vehicles)
        return max(from_counts, visible / seconds if seconds > 0 else 0.0)

    def _congestion(
        self, vehicles: int, stopped: int, density: float, speed: float | None
    ) -> Congestion:
        s = self.settings
        if vehicles == 0:
            return Congestion.FREE
        if stopped >= s.standstill_min and stopped / vehicles >= s.standstill_share:
            return Congestion.STANDSTILL
        if density >= s.heavy_density:
            level = 3
        elif density >= s.moderate_density:
            level = 2
        elif density >= s.light_density:
            level = 1
        else:
            level = 0
        if speed is not None and speed < s.slow_speed and level > 0:
            level = min(level + 1, 3)
        return _LEVELS[level]

    def _summary(
        self,
        context: DescribeContext,
        counts: dict[str, int],
        congestion: Congestion,
        density: float,
        speed: float | None,
        stopped: int,
    ) -> str:
        w = context.window
        start = datetime.fromtimestamp(w.from_us / 1e6, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        seen = [_plural(n, name) for name, n in counts.items() if n and name != "other"]
        if counts["other"]:
            seen.append(f"{counts['other']} other object{'s' if counts['other'] != 1 else ''}")
        what = ", ".join(seen) if seen else "no road users"
        parts = [f"Camera {context.camera}, {w.duration_s:.0f} s from {start} UTC: {what}."]
        traffic = f"Traffic is {congestion.value} (about {density:.1f} vehicles in view"
        if speed is not None:
            traffic += f", median apparent speed {speed:.2f} image widths/s"
        parts.append(traffic + ").")
        if stopped:
            parts.append(f"{_plural(stopped, 'vehicle')} stood still for a long time.")
        if context.analytics is not None:
            parts += sentences(context.analytics, context.track_classes())
        if w.reason != "window":
            parts.append(f"Described because: {w.reason}.")
        parts.append("Made by rules from detection metadata (no images were looked at).")
        return " ".join(parts)


_SCENE_KINDS = {
    "stopped_vehicle": (IncidentKind.STOPPED_VEHICLE, "stopped in zone {zone}"),
    "wrong_way": (IncidentKind.WRONG_WAY, "went the wrong way in zone {zone}"),
}


def _scene_incidents(context: DescribeContext, stopped: set[int]) -> list[Incident]:
    """The analytics scene's incidents in the window, one per kind and track (a stopped
    vehicle the rules already report is not reported twice); at most 40."""
    if context.analytics is None:
        return []
    out: list[Incident] = []
    done: set[tuple[str, int]] = set()
    for i in context.analytics.incidents:
        if i.kind not in _SCENE_KINDS or (i.kind, i.track_id) in done or len(out) >= 40:
            continue
        if i.kind == "stopped_vehicle" and i.track_id in stopped:
            continue
        done.add((i.kind, i.track_id))
        kind, what = _SCENE_KINDS[i.kind]
        who = class_name(i.class_id) if i.class_id is not None else "road user"
        out.append(
            Incident(
                kind=kind,
                description=f"A {who} (track {i.track_id}) {what.format(zone=i.subject)}.",
                track_ids=[i.track_id],
            )
        )
    return out
