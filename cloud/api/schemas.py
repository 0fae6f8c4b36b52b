"""Request and response models of the query API (they are its OpenAPI documentation).

Times are ISO 8601 in UTC (``2026-11-24T10:00:00Z``); boxes are normalised to [0, 1] of the
frame (x1, y1 top left; x2, y2 bottom right). Records of :mod:`cloud.catalog` become these
models through the ``of`` constructors, so the catalog's types never leak into the API.
The search request and its answers are in :mod:`cloud.api.search_schemas`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.params import to_datetime
from cloud.catalog_records import (
    CameraRecord,
    CatalogStats,
    DetectionRecord,
    EdgeRecord,
    SpaceRecord,
    TrackRecord,
)


def _time(us: int | None) -> datetime | None:
    return None if us is None else to_datetime(us)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Box(_Out):
    x1: float = Field(description="Left edge, 0-1 of the frame width.")
    y1: float = Field(description="Top edge, 0-1 of the frame height.")
    x2: float = Field(description="Right edge, 0-1 of the frame width.")
    y2: float = Field(description="Bottom edge, 0-1 of the frame height.")

    @classmethod
    def of(cls, box: tuple[float, float, float, float]) -> Box:
        return cls(x1=box[0], y1=box[1], x2=box[2], y2=box[3])


class Detection(_Out):
    """One box a detector reported, possibly with an embedding."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 4711,
                    "camera_id": 3,
                    "camera": "north-gate",
                    "edge_id": "edge-01",
                    "track_id": 812,
                    "time": "2026-11-24T10:00:00.120000Z",
                    "class_id": 2,
                    "confidence": 0.91,
                    "box": {"x1": 0.41, "y1": 0.52, "x2": 0.58, "y2": 0.77},
                    "journal_seq": 120934,
                    "embedding_space": "vit_small_patch16_224-384",
                }
            ]
        }
    )

    id: int = Field(description="Detection id.")
    camera_id: int = Field(description="Camera id (see /v1/cameras).")
    camera: str = Field(description="The camera's name on its edge.")
    edge_id: str = Field(description="The edge that sent it.")
    track_id: int | None = Field(description="Track id (/v1/tracks/{id}); null: untracked.")
    time: datetime = Field(description="Capture time of the frame (UTC).")
    class_id: int = Field(description="Detector class id (COCO ids for the default model).")
    confidence: float = Field(description="Detector confidence, 0-1.")
    box: Box
    journal_seq: int = Field(description="Sequence number of the edge frame it came in.")
    embedding_space: str | None = Field(
        description="Embedding space of its stored embedding; null: no embedding."
    )
    path_point: bool = Field(
        False,
        description="A point of the track's simplified path (a TrackSummary's), not a box sent "
        "for that frame: its confidence is 0, and boxes between two are interpolated "
        "(/v1/tracks/{id}/path).",
    )

    @classmethod
    def of(cls, d: DetectionRecord) -> Detection:
        return cls(
            id=d.id,
            camera_id=d.camera_id,
            camera=d.camera,
            edge_id=d.edge_id,
            track_id=d.track_id,
            time=to_datetime(d.ts_us),
            class_id=d.class_id,
            confidence=d.confidence,
            box=Box.of(d.box),
            journal_seq=d.seq,
            embedding_space=d.space,
            path_point=d.path_point,
        )


class DetectionPage(_Out):
    items: list[Detection] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null: this is the last page."
    )


class Camera(_Out):
    id: int
    edge_id: str
    name: str
    width: int | None = Field(description="Frame width (px), when the edge announced it.")
    height: int | None = Field(description="Frame height (px), when the edge announced it.")
    fps: float | None = Field(description="Frames per second, when the edge announced it.")
    first_seen: datetime = Field(description="When the cloud first heard of the camera.")
    detections: int = Field(description="Detections stored for the camera.")
    first_detection: datetime | None
    last_detection: datetime | None

    @classmethod
    def of(cls, c: CameraRecord) -> Camera:
        return cls(
            id=c.id,
            edge_id=c.edge_id,
            name=c.name,
            width=c.width,
            height=c.height,
            fps=c.fps,
            first_seen=to_datetime(c.first_seen_us),
            detections=c.detections,
            first_detection=_time(c.first_detection_us),
            last_detection=_time(c.last_detection_us),
        )


class CameraList(_Out):
    cameras: list[Camera]


class Track(_Out):
    """One object followed by an edge's tracker, with its detections."""

    id: int
    camera_id: int
    camera: str
    edge_id: str
    local_id: int = Field(description="The edge tracker's id (restarts with the edge).")
    class_id: int | None = Field(description="Majority class (from the track end), if known.")
    first_seen: datetime
    last_seen: datetime
    frames: int | None = Field(description="Frames the tracker saw it in (from the track end).")
    ended: bool = Field(description="Whether the edge reported the track's end.")
    class_votes: dict[int, int] = Field(description="Frames per class id.")
    path: list[Box] = Field(
        description="Sampled boxes along the track (a TrackEnd's), or the points of its "
        "simplified path (TrackSummary), oldest first."
    )
    detection_count: int = Field(description="Detections of the track in the catalog.")
    detections: list[Detection] = Field(
        description="Its detections, oldest first, at most 1000 (see detection_count)."
    )

    @classmethod
    def of(cls, t: TrackRecord) -> Track:
        return cls(
            id=t.id,
            camera_id=t.camera_id,
            camera=t.camera,
            edge_id=t.edge_id,
            local_id=t.local_id,
            class_id=t.class_id,
            first_seen=to_datetime(t.first_seen_us),
            last_seen=to_datetime(t.last_seen_us),
            frames=t.frames,
            ended=t.ended,
            class_votes=t.class_votes,
            path=[Box.of(b) for b in t.path],
            detection_count=t.detection_count,
            detections=[Detection.of(d) for d in t.detections],
        )


class Space(_Out):
    name: str = Field(description="Encoder, dim and -random-init for untrained weights.")
    encoder: str
    dim: int
    random_init: bool = Field(description="Untrained encoder: similarity means nothing.")
    embeddings: int = Field(description="Embeddings stored in this space.")

    @classmethod
    def of(cls, s: SpaceRecord) -> Space:
        return cls(
            name=s.name,
            encoder=s.encoder,
            dim=s.dim,
            random_init=s.random_init,
            embeddings=s.embeddings,
        )


class EdgeProgress(_Out):
    id: str
    last_seen: datetime | None = Field(description="Last handshake (Hello) of the edge.")
    watermark: int | None = Field(description="Every seq up to this one is stored.")
    last_capture: datetime | None = Field(description="Capture time of its newest frame.")
    last_received: datetime | None = Field(description="When its newest frame arrived.")

    @classmethod
    def of(cls, e: EdgeRecord) -> EdgeProgress:
        return cls(
            id=e.id,
            last_seen=_time(e.last_seen_us),
            watermark=e.watermark,
            last_capture=_time(e.last_capture_us),
            last_received=_time(e.last_received_us),
        )


class Stats(_Out):
    edges: int
    cameras: int
    tracks: int
    detections: int
    embeddings: int
    journal_frames: int
    spaces: list[Space]
    per_edge: list[EdgeProgress]
    database_bytes: int | None = Field(description="SQLite file + WAL; null for a server DB.")

    @classmethod
    def of(cls, s: CatalogStats, spaces: list[SpaceRecord]) -> Stats:
        return cls(
            edges=s.edges,
            cameras=s.cameras,
            tracks=s.tracks,
            detections=s.detections,
            embeddings=s.embeddings,
            journal_frames=s.journal_frames,
            spaces=[Space.of(x) for x in spaces],
            per_edge=[EdgeProgress.of(e) for e in s.per_edge],
            database_bytes=s.database_bytes,
        )


class Health(_Out):
    status: str = Field(description="ok, or unavailable when the database does not answer.")
    database: str = Field(description="ok, or why the database check failed.")
    details: dict[str, Any] = Field(description="Readiness of the other parts (index, ...).")


class ErrorBody(_Out):
    code: str = Field(description="Machine-readable: invalid_parameter, not_found, ...")
    message: str = Field(description="What went wrong, naming the parameter.")
    details: list[dict[str, str]] | None = Field(
        None, description="Validation errors: one {location, message} per bad parameter."
    )


class ErrorResponse(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": {"code": "not_found", "message": "no detection with id 4711"}}]
        }
    )
    error: ErrorBody
