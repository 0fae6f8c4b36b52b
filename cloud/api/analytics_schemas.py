"""Response models of the analytics routes (:mod:`cloud.api.analytics`): scenes, events,
count series and congestion windows. Times are ISO 8601 in UTC, like the rest of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.analytics.queries import CongestionRecord, EventRecord
from cloud.analytics.scenes import StoredScene
from cloud.api.params import to_datetime
from cloud.describe.schema import class_name

EventKindName = Literal[
    "line_crossing",
    "zone_entry",
    "zone_exit",
    "speed",
    "stopped_vehicle",
    "wrong_way",
    "congestion",
]
LevelName = Literal["free", "slow", "jammed", "unknown"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


def _class(class_id: int | None) -> str | None:
    return None if class_id is None else class_name(class_id)


class SceneOut(_Out):
    """A camera's scene as stored: validated, with its defaults filled in."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "camera_id": 3,
                    "version": "831cc44137ba9551",
                    "created": "2026-11-24T10:00:00Z",
                    "scene": {
                        "frame": {"width": 1280, "height": 720},
                        "lines": {"gate": {"points": [[0.0, 0.5], [1.0, 0.5]],
                                           "direction": "left_to_right", "description": ""}},
                        "zones": {},
                        "calibration": None,
                        "speed_min_segment_s": 0.5,
                        "description": "",
                    },
                }
            ]
        }
    )  # fmt: skip

    camera_id: int
    version: str = Field(description="Content hash of the scene; events name it.")
    created: datetime = Field(description="When it became the camera's scene.")
    scene: dict[str, Any] = Field(description="The scene (see deploy/scenes/README.md).")

    @classmethod
    def of(cls, s: StoredScene) -> SceneOut:
        return cls(
            camera_id=s.camera_id,
            version=s.version,
            created=to_datetime(s.created_us),
            scene=s.body,
        )


class SceneSet(SceneOut):
    changed: bool = Field(
        description="False when the camera had this scene already (nothing was stored)."
    )


class SceneHistory(_Out):
    items: list[SceneOut] = Field(description="Newest first; the first is the current scene.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null: this is the last page."
    )


class AnalyticsEvent(_Out):
    """Something the analytics found in a track (one row per event key)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 912,
                    "camera_id": 3,
                    "camera": "north-gate",
                    "edge_id": "edge-01",
                    "track_id": 4711,
                    "kind": "line_crossing",
                    "subject": "gate",
                    "ordinal": 0,
                    "time": "2026-11-24T10:00:02.999924Z",
                    "class_id": 2,
                    "class_name": "car",
                    "direction": "in",
                    "value": None,
                    "unit": None,
                    "scene_version": "831cc44137ba9551",
                    "created": "2026-11-24T10:00:05.1Z",
                    "details": {},
                }
            ]
        }
    )

    id: int
    camera_id: int
    camera: str = Field(description="The camera's name on its edge.")
    edge_id: str
    track_id: int | None = Field(
        description="The track (/v1/tracks/{id}, while retention keeps it); null for a "
        "zone's congestion change, which belongs to no track."
    )
    kind: EventKindName
    subject: str = Field(description="The line's or zone's name; empty for speed.")
    ordinal: int = Field(
        description="The crossing's index on that line (lines), the stay's index (zones); "
        "speed: 0 while the track is in progress, 1 once it ended (the settled speed); "
        "congestion: the window's index (start / length)."
    )
    time: datetime = Field(description="When it happened (capture time, UTC).")
    class_id: int | None = Field(description="The track's class (its votes once ended).")
    class_name: str | None
    direction: Literal["in", "out", "free", "slow", "jammed"] | None = Field(
        description="Line crossings: in or out; congestion: the zone's new level."
    )
    value: float | None = Field(
        description="speed: the track's median speed; zone_exit: dwell; stopped_vehicle: time "
        "stopped; wrong_way: the backward distance reached; congestion: the window's "
        "occupancy (see `unit`)."
    )
    unit: str | None = Field(description="km/h, image_widths/s, s, m, image_widths or vehicles.")
    scene_version: str = Field(description="The scene that found it.")
    created: datetime = Field(description="When it was stored.")
    details: dict[str, Any] = Field(
        description="Kind-specific: crossed (zone_entry, zone_exit), entered_us and dwell_us "
        "(zone_exit), since_us (stopped_vehicle), segments (speed); level, previous, "
        "window_s, vehicles, mean_speed, speed_unit (congestion)."
    )

    @classmethod
    def of(cls, e: EventRecord) -> AnalyticsEvent:
        return cls(
            id=e.id,
            camera_id=e.camera_id,
            camera=e.camera,
            edge_id=e.edge_id,
            track_id=e.track_id,
            kind=e.kind,  # the runner stores EventKind values only (validated here)
            subject=e.subject,
            ordinal=e.ordinal,
            time=to_datetime(e.at_us),
            class_id=e.class_id,
            class_name=_class(e.class_id),
            direction=e.direction,
            value=e.value,
            unit=e.unit,
            scene_version=e.scene_version,
            created=to_datetime(e.created_us),
            details=e.details,
        )


class EventPage(_Out):
    items: list[AnalyticsEvent] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null: this is the last page."
    )


class CountSeries(_Out):
    class_id: int | None
    class_name: str | None
    direction: Literal["in", "out", "entry"] = Field(
        description="in / out for a line; entry for a zone."
    )
    counts: list[int] = Field(description="One count per bucket of `buckets`.")
    total: int


class Counts(_Out):
    """Crossings of a line per direction, or entries of a zone, per class and time bucket."""

    camera_id: int
    line: str | None
    zone: str | None
    bucket_s: float = Field(description="Length of a bucket (s); buckets align to the epoch.")
    start: datetime = Field(description="Start of the first bucket.")
    end: datetime = Field(description="End of the last bucket (exclusive).")
    buckets: list[datetime] = Field(description="Start of each bucket.")
    series: list[CountSeries] = Field(description="Per class and direction (none: no events).")
    totals: dict[str, int] = Field(description="Per direction, every class.")

    @classmethod
    def of(
        cls,
        camera_id: int,
        subject: tuple[str | None, str | None],
        start_us: int,
        bucket_us: int,
        n: int,
        rows: list[tuple[int, int | None, str | None, int]],
    ) -> Counts:
        line, zone = subject
        by_series: dict[tuple[int | None, str], list[int]] = {}
        for b, class_id, direction, count in rows:
            key = (class_id, direction or "entry")
            by_series.setdefault(key, [0] * n)[b] += count
        series = [
            CountSeries(
                class_id=class_id,
                class_name=_class(class_id),
                direction=direction,
                counts=counts,
                total=sum(counts),
            )
            for (class_id, direction), counts in sorted(
                by_series.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, kv[0][1])
            )
        ]
        totals: dict[str, int] = {}
        for s in series:
            totals[s.direction] = totals.get(s.direction, 0) + s.total
        return cls(
            camera_id=camera_id,
            line=line,
            zone=zone,
            bucket_s=bucket_us / 1e6,
            start=to_datetime(start_us),
            end=to_datetime(start_us + n * bucket_us),
            buckets=[to_datetime(start_us + i * bucket_us) for i in range(n)],
            series=series,
            totals=totals,
        )


class CongestionWindow(_Out):
    """A zone's congestion in one time window (docs/architecture.md: analytics)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "camera_id": 3,
                    "zone": "queue",
                    "start": "2026-11-24T10:00:00Z",
                    "end": "2026-11-24T10:01:00Z",
                    "window_s": 60.0,
                    "occupancy": 2.5,
                    "mean_speed": 3.2,
                    "speed_unit": "km/h",
                    "vehicles": 4,
                    "level": "jammed",
                    "provisional": False,
                    "scene_version": "831cc44137ba9551",
                    "updated": "2026-11-24T10:01:02.5Z",
                }
            ]
        }
    )

    camera_id: int
    zone: str
    start: datetime = Field(description="Start of the window (aligned to the epoch).")
    end: datetime = Field(description="End of the window (exclusive).")
    window_s: float = Field(description="Length of the window (s).")
    occupancy: float = Field(description="Vehicles present on average over the window.")
    mean_speed: float | None = Field(
        description="Mean of the present vehicles' speeds (see `speed_unit`); null when none "
        "has a measured speed."
    )
    speed_unit: Literal["km/h", "image_widths/s"]
    vehicles: int = Field(description="Distinct vehicles present during the window.")
    level: LevelName = Field(
        description="free, slow or jammed by the zone's thresholds; unknown: enough vehicles "
        "but none with a measured speed."
    )
    provisional: bool = Field(
        description="The window is still open (the camera's data have not reached its end "
        "yet): its figures may change."
    )
    scene_version: str = Field(description="The scene whose thresholds gave the level.")
    updated: datetime = Field(description="When the figures were last computed.")

    @classmethod
    def of(cls, r: CongestionRecord) -> CongestionWindow:
        return cls(
            camera_id=r.camera_id,
            zone=r.zone,
            start=to_datetime(r.start_us),
            end=to_datetime(r.start_us + r.window_us),
            window_s=r.window_us / 1e6,
            occupancy=r.occupancy,
            mean_speed=r.mean_speed,
            speed_unit=r.speed_unit,  # the runner stores these values only (validated here)
            vehicles=r.vehicles,
            level=r.level,
            provisional=r.provisional,
            scene_version=r.scene_version,
            updated=to_datetime(r.updated_us),
        )


class CongestionPage(_Out):
    items: list[CongestionWindow] = Field(
        description="Newest window first; a window without a row had no vehicle in the zone "
        "(free, occupancy 0)."
    )
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null: this is the last page."
    )
