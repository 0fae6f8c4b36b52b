"""The edge's emission policy settings (``policy:``): when a track's embeddings, summaries,
counts and boxes are sent (:mod:`edge.policy`) and when a new track continues a lost one
(:mod:`edge.relink`). Part of :class:`edge.config.EdgeConfig`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyConfig(_Model):
    confirm_frames: int = Field(
        3, ge=1, description="Frames a track must be seen before its first embedding is sent."
    )
    drift_threshold: float = Field(
        0.15,
        gt=0,
        le=2,
        description="Cosine distance from the last sent embedding that counts as appearance drift.",
    )
    check_interval_s: float = Field(
        5.0, gt=0, description="Re-embed a track to check for drift at most this often (s)."
    )
    recheck_scale: float = Field(
        1.5,
        gt=1,
        description="Re-check sooner when the box side "
        "grew or shrank by this factor since the last embedding.",
    )
    keyframe_interval_s: float = Field(
        10.0,
        gt=0,
        description="Send an embedding at least this often per track, drifted or not (s).",
    )
    lost_frames: int = Field(
        60,
        ge=1,
        description="Frames unseen before a track is ended (a confirmed track is held longer "
        "while a re-link may still continue it: policy.relink_window_s); at least "
        "detector.tracking.track_buffer, or a track the tracker re-finds would start a second "
        "lifetime whose summary supersedes the first's class votes at the cloud.",
    )
    path_tolerance_px: float = Field(
        2.0,
        ge=0.0,
        le=1_000.0,
        description="A TrackSummary's path keeps the boxes needed to redraw every box of the "
        "track within this many pixels (interpolated in time: shared/paths.py).",
    )
    path_grid: int = Field(
        16,
        ge=1,
        le=4_096,
        description="Grid of a TrackSummary's path boxes, in units of 1/65535 of the frame "
        "(16: 0.16 px of 640 px).",
    )
    summary_every_s: float = Field(
        30.0,
        ge=0.0,
        description="Summarise a track still in view this often (s; 0: only at its end); the "
        "next summary continues its path.",
    )
    counts_every_frames: int = Field(
        0,
        ge=0,
        description="Send FrameCounts every N frames (0: never; the cloud derives objects in "
        "view from the tracks).",
    )
    counts_on_change: bool = Field(True, description="Skip FrameCounts equal to the last sent.")
    detections_every_frames: int = Field(
        0,
        ge=0,
        description="Send all boxes every N frames (0: never; paths come in TrackSummary).",
    )
    max_pending_embeddings: int = Field(
        32,
        ge=1,
        description="Crops waiting for the encoder; over this, drift checks are skipped (counted).",
    )
    relink_window_s: float = Field(
        2.0,
        ge=0.0,
        le=60.0,
        description="A new track may continue a track lost at most this long before (s; 0: "
        "never): edge/relink.py.",
    )
    relink_min_cosine: float = Field(
        0.65,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity a new track's first embedding needs with the lost "
        "track's last sent one to continue it.",
    )
    relink_max_offset: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        description="Largest distance of the new track's first box centre from the lost "
        "track's position predicted at constant velocity, in box sides (of the smaller box).",
    )
