"""Prometheus metrics of the analytics runner, on the service's registry (no global state).

``camera`` labels are ``edge/name`` (how alerts and people name a camera); ``class`` is the
COCO class name (``unknown`` for a track without a class). The event counters move only when
an event is first stored, so re-processing never counts twice; an event that a later analysis
of a rewritten track changes or removes (see :mod:`cloud.analytics.store`) stays counted.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cloud.describe.schema import class_name


def class_label(class_id: int | None) -> str:
    return "unknown" if class_id is None else class_name(class_id)


class AnalyticsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.crossings = Counter(
            "semcom_analytics_crossings",
            "Line crossings stored, by camera, line, direction (in, out) and class.",
            ["camera", "line", "direction", "class"],
            registry=registry,
        )
        self.incidents = Counter(
            "semcom_analytics_incidents",
            "Incidents stored (stopped_vehicle, wrong_way), by camera and kind.",
            ["camera", "kind"],
            registry=registry,
        )
        self.zone_entries = Counter(
            "semcom_analytics_zone_entries",
            "Zone entries stored, by camera, zone and class.",
            ["camera", "zone", "class"],
            registry=registry,
        )
        self.tracks = Counter(
            "semcom_analytics_tracks_analyzed",
            "Track analyses run (a growing track is analysed again as it changes), by camera.",
            ["camera"],
            registry=registry,
        )
        self.errors = Counter(
            "semcom_analytics_errors",
            "Failures: a track the engine could not analyse (track), a pass that failed "
            "(pass), a stored scene that no longer validates (scene).",
            ["stage"],
            registry=registry,
        )
        self.lag = Gauge(
            "semcom_analytics_lag_seconds",
            "Age of the newest track change analysed (by the ingest writer's clock), by camera.",
            ["camera"],
            registry=registry,
        )
        self.congestion = Gauge(
            "semcom_analytics_congestion_level",
            "Congestion level of each zone in its newest closed window, by camera and zone: "
            "0 free, 1 slow, 2 jammed, -1 unknown (vehicles, but none with a speed).",
            ["camera", "zone"],
            registry=registry,
        )
        self.pass_seconds = Histogram(
            "semcom_analytics_pass_seconds",
            "Duration of one runner pass over every camera with a scene (s).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
