"""The edge's tracker settings (``detector.tracking``): the ultralytics tracker's association
thresholds. Part of :class:`edge.config.EdgeConfig`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackingConfig(_Model):
    """The ultralytics tracker's association settings (its ``bytetrack.yaml``/``botsort.yaml``
    keys); the defaults were measured on the shared clips (docs/architecture.md, "Fewer false
    new tracks") and differ from ultralytics' own where that made fewer false new tracks."""

    track_buffer: int = Field(
        60,
        ge=1,
        le=10_000,
        description="Frames a lost track is kept for re-association by the tracker (at the "
        "stream's frame rate).",
    )
    track_high_thresh: float = Field(
        0.25, ge=0.0, le=1.0, description="Score of the boxes matched in the first stage."
    )
    track_low_thresh: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Lowest score of the boxes matched in the second stage (only boxes above "
        "detector.conf reach the tracker).",
    )
    new_track_thresh: float = Field(
        0.25, ge=0.0, le=1.0, description="Score a box needs to start a new track."
    )
    match_thresh: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="Highest association cost (1 - IoU, fused with the score) of a match.",
    )
