"""What the catalog's read side returns: frozen records and its errors (see :mod:`cloud.catalog`).

Times are microseconds since the Unix epoch; boxes (x1, y1, x2, y2) are normalised to [0, 1]
of the frame. The API turns these into its JSON models; nothing here knows about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass


class CatalogError(Exception):
    """Base of the catalog's errors."""


class InvalidCursor(CatalogError, ValueError):
    """A page cursor that this catalog did not make (or that was altered)."""


@dataclass(frozen=True)
class CameraRecord:
    id: int
    edge_id: str
    name: str
    width: int | None
    height: int | None
    fps: float | None
    first_seen_us: int
    detections: int
    first_detection_us: int | None
    last_detection_us: int | None


@dataclass(frozen=True)
class DetectionRecord:
    """One box, with its camera's name and, when it has one, its embedding space's name."""

    id: int
    camera_id: int
    camera: str
    edge_id: str
    track_id: int | None
    ts_us: int
    class_id: int
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 normalised to [0, 1]
    seq: int
    space: str | None
    path_point: bool = False  # a point of a TrackSummary's simplified path (no confidence: 0)


@dataclass(frozen=True)
class DetectionPage:
    items: list[DetectionRecord]
    next_cursor: str | None  # None: this was the last page


@dataclass(frozen=True)
class TrackRecord:
    id: int
    camera_id: int
    camera: str
    edge_id: str
    local_id: int
    class_id: int | None
    first_seen_us: int
    last_seen_us: int
    frames: int | None
    ended: bool
    class_votes: dict[int, int]
    path: list[tuple[float, float, float, float]]
    detection_count: int
    detections: list[DetectionRecord]  # oldest first, at most the requested bound


@dataclass(frozen=True)
class EmbeddingRecord:
    """A detection's stored code and what is needed to decode it again."""

    detection_id: int
    space: str
    fingerprint: int
    codec_id: str
    content_hash: bytes
    dim: int
    code: bytes


@dataclass(frozen=True)
class SpaceRecord:
    name: str
    encoder: str
    dim: int
    random_init: bool
    embeddings: int


@dataclass(frozen=True)
class EdgeRecord:
    id: str
    last_seen_us: int | None  # last Hello
    watermark: int | None  # highest seq with every seq below it stored
    last_capture_us: int | None  # capture time of the highest stored seq
    last_received_us: int | None


@dataclass(frozen=True)
class CatalogStats:
    edges: int
    cameras: int
    tracks: int
    detections: int
    embeddings: int
    journal_frames: int
    per_edge: list[EdgeRecord]
    database_bytes: int | None  # SQLite file plus its WAL; None for a server database
