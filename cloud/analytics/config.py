"""The ``analytics`` section of the cloud configuration (the runner; scenes come by API/CLI)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AnalyticsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True,
        description="Run the analytics runner inside the service: it analyses the tracks of "
        "every camera that has a scene (PUT /v1/cameras/{id}/scene) and does nothing otherwise.",
    )
    period_s: float = Field(
        2.0, gt=0, le=3600, description="Seconds between two passes over the changed tracks."
    )
    lookback_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Each pass also looks at tracks changed this long before its watermark: "
        "covers ingest transactions that commit out of their start order (several writers on "
        "PostgreSQL) and small clock steps; such tracks are analysed again only if changed.",
    )
    batch_tracks: int = Field(
        200, ge=1, le=10_000, description="Tracks analysed and stored per transaction."
    )
    long_track_samples: int = Field(
        2_000,
        ge=2,
        description="A track in progress with this many samples (a vehicle parked for "
        "minutes) is analysed again at most every long_track_every_s, not at every change: "
        "its events come that much later, and at once when it ends.",
    )
    long_track_every_s: float = Field(
        30.0, ge=0, le=3600, description="See long_track_samples (s)."
    )
    congestion_window_s: int = Field(
        60,
        ge=10,
        le=3600,
        description="Length of the congestion windows (s), aligned to the Unix epoch: per "
        "zone of a scene and window, the occupancy, mean speed, vehicles and level "
        "(GET /v1/analytics/congestion).",
    )
    congestion_max_stay_s: float = Field(
        3600.0,
        ge=60,
        le=86_400,
        description="A zone stay counts in a congestion window only if it began at most this "
        "long before the window (s): bounds what each window reads; a vehicle parked longer "
        "stops counting then.",
    )
    max_tracks_per_pass: int = Field(
        5_000,
        ge=1,
        description="Tracks analysed per camera in one pass at most (a backlog continues in "
        "the next pass, so a pass stays short and shutdown quick).",
    )
