"""Response models of a track's redrawn path and of objects in view (track-level streams)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from cloud.api.params import to_datetime
from cloud.api.schemas import Box, _Out
from cloud.catalog_paths import PathBox, ViewWindow


class PathStep(_Out):
    time: datetime = Field(description="Capture time (UTC).")
    box: Box
    interpolated: bool = Field(
        description="Interpolated in time between the track's sightings (its path points): "
        "not a box the edge sent for this time."
    )

    @classmethod
    def of(cls, b: PathBox) -> PathStep:
        return cls(time=to_datetime(b.ts_us), box=Box.of(b.box), interpolated=b.interpolated)


class TrackPath(_Out):
    """A track's boxes over its life: its sightings, and interpolated boxes between them."""

    track_id: int
    step_ms: int = Field(description="Spacing of the interpolated boxes (ms).")
    boxes: list[PathStep] = Field(description="Oldest first.")


class ViewWindowOut(_Out):
    start: datetime
    end: datetime = Field(description="Exclusive.")
    classes: dict[int, float] = Field(
        description="Per class id, the mean number of its tracks in view over the window."
    )

    @classmethod
    def of(cls, w: ViewWindow) -> ViewWindowOut:
        return cls(start=to_datetime(w.start_us), end=to_datetime(w.end_us), classes=w.classes)


class ObjectsInView(_Out):
    """Objects in view per class and window, derived from the tracks' first and last
    sightings (no per-frame counts needed)."""

    window_s: float
    windows: list[ViewWindowOut]
