"""Request and response models of the query API (they are its OpenAPI documentation).

Times are ISO 8601 in UTC (``2026-11-24T10:00:00Z``); boxes are normalised to [0, 1] of the
frame (x1, y1 top left; x2, y2 bottom right). Records of :mod:`cloud.catalog` become these
models through the ``of`` constructors, so the catalog's types never leak into the API.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from cloud.api.grouping import MAX_CANDIDATES, Grouping
from cloud.api.params import MAX_FILTER_ITEMS, CameraId, ClassId, DetectionId, Time, to_datetime
from cloud.catalog_records import (
    CameraRecord,
    CatalogStats,
    DetectionRecord,
    EdgeRecord,
    SpaceRecord,
    TrackRecord,
)

MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
"""Largest uploaded image (bytes, decoded)."""
MAX_K: Final = 100
MAX_TEXT: Final = 500
"""Characters of a text query."""


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
    path: list[Box] = Field(description="Sampled boxes along the track, oldest first.")
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


class QueryFilter(BaseModel):
    """Which detections may be hits; every given condition must hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    camera: list[CameraId] | None = Field(
        None, max_length=MAX_FILTER_ITEMS, description="Camera ids (any of)."
    )
    class_: list[ClassId] | None = Field(
        None, alias="class", max_length=MAX_FILTER_ITEMS, description="Class ids (any of)."
    )
    from_: Time | None = Field(None, alias="from", description="Not before this time.")
    to: Time | None = Field(None, description="Before this time (exclusive).")


class SearchRequest(BaseModel):
    """Exactly one of ``detection_id``, ``image`` (similar detections) and ``text``
    (descriptions, full text; and crops by meaning when the cloud has a CLIP text encoder).

    Similar detections come one per track by default ("where else is this object?"), and a
    search from a detection leaves the detection's own track out; ``group`` and
    ``exclude_own_track`` ask for the raw nearest detections instead.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["detection_id"]},
                {"required": ["image"]},
                {"required": ["text"]},
            ],
            "examples": [
                {"detection_id": 4711, "k": 10, "filter": {"camera": [3], "class": [2]}},
                {"detection_id": 4711, "k": 20, "group": "detection", "exclude_own_track": False},
                {"image": "iVBORw0KGgo...", "k": 5, "filter": {"from": "2026-11-24"}},
                {"text": "stopped truck", "k": 10, "filter": {"camera": [3]}},
            ],
        },
    )

    detection_id: DetectionId | SkipJsonSchema[None] = Field(
        None, description="Find detections that look like this one (it must have an embedding)."
    )
    # The length limit sits on the str member: on the union it would be applied to None too.
    image: (
        Annotated[str, Field(max_length=(MAX_IMAGE_BYTES * 4) // 3 + 4)] | SkipJsonSchema[None]
    ) = Field(
        None,
        json_schema_extra={"contentEncoding": "base64"},
        description="Base64 PNG or JPEG of the object (a crop), embedded with the query encoder.",
    )
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)] | SkipJsonSchema[None] = Field(
        None,
        description="Words to find in the describer's descriptions (all of them, stemmed), "
        "answered in `hits`; with a CLIP text encoder (an open_clip `encoder` in the cloud "
        "config) also detections whose crops match the text, in a labelled `crops` section "
        "(else null, and `crops_unavailable` says why). The filter's class keeps descriptions "
        "that counted that class (and crops of that class); from/to select windows "
        "overlapping them (and crops in that time).",
    )
    k: int = Field(
        10,
        ge=1,
        le=MAX_K,
        description="Hits to return at most (distinct tracks when `group` is track).",
    )
    filter: QueryFilter | None = None
    space: str | None = Field(
        None,
        max_length=200,
        description="Embedding space; default: the detection's space, or the query encoder's.",
    )
    group: Grouping = Field(
        "track",
        description="detection_id and image searches. `track`: one hit per track, its "
        "best-scoring sighting (an untracked detection counts as its own track), k tracks; "
        "`detection`: the raw nearest detections, several of one track.",
    )
    exclude_own_track: bool | None = Field(
        None,
        description="detection_id searches: leave out the query detection's track (and the "
        "detection itself). Default: true when `group` is track, false when it is detection "
        "(raw hits: the query itself first, near 1).",
    )

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        given = [self.detection_id is not None, self.image is not None, self.text is not None]
        if sum(given) != 1:
            raise ValueError(
                "give exactly one of detection_id and image (similar detections) "
                "or text (descriptions, and crops with a text encoder)"
            )
        if self.text is not None and self.space is not None:
            raise ValueError("space applies to detection_id and image searches, not text")
        if self.text is not None and "group" in self.model_fields_set:
            raise ValueError("group applies to detection_id and image searches, not text")
        if self.detection_id is None and self.exclude_own_track is not None:
            raise ValueError(
                "exclude_own_track applies to detection_id searches only "
                "(an image or a text query has no track)"
            )
        return self

    def excludes_own_track(self) -> bool:
        """Whether a detection_id search leaves its own track out (the documented default)."""
        if self.exclude_own_track is not None:
            return self.exclude_own_track
        return self.group == "track"

    @field_validator("image")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            decode_image_field(value)  # reject bad base64 as a validation error (422)
        return value

    def image_bytes(self) -> bytes:
        """The decoded image; base64 was checked when the request was validated.

        Decoding is fast C (about 10 ms for the largest image), so it is done again rather
        than kept in the model.
        """
        if self.image is None:
            raise ValueError("this request searches by detection_id, not by image")
        return decode_image_field(self.image)


def decode_image_field(value: str) -> bytes:
    """The bytes of a base64 image (standard or URL-safe alphabet, padding optional).

    A ``data:`` URL (as browsers make them) is accepted; line breaks are ignored.
    """
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        text = value.encode("ascii").translate(None, b" \t\r\n")
    except UnicodeEncodeError:
        raise ValueError("not valid base64") from None
    altchars = b"-_" if (b"-" in text or b"_" in text) else None
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if not data:
        raise ValueError("empty image")
    return data


class Hit(_Out):
    score: float = Field(description="Cosine similarity to the query, -1 to 1.")
    track_id: int | None = Field(
        description="The hit's track (/v1/tracks/{id}); null: an untracked detection."
    )
    sightings: int = Field(
        description="group=track: detections of this track among the nearest candidates "
        "fetched (`candidates`), the hit being the best of them; a lower bound on the track's "
        "matches. 1 for an untracked detection and for group=detection."
    )
    detection: Detection = Field(description="The hit (with group=track: the best sighting).")


class SearchResponse(_Out):
    space: str = Field(description="The embedding space searched.")
    random_init_encoder: bool = Field(
        description="The space's encoder has untrained weights: scores mean nothing."
    )
    group: Grouping = Field(
        description="track: one hit per track (its best sighting); detection: raw hits."
    )
    excluded_track: int | None = Field(
        description="The query detection's track, left out of the hits; null: none was."
    )
    excluded_detection: int | None = Field(
        description="The query detection, left out of the hits; null: it may be a hit."
    )
    candidates: int = Field(
        description="Nearest detections fetched from the index to form the hits (grouping "
        f"over-fetches until k tracks are found, at most {MAX_CANDIDATES})."
    )
    hits: list[Hit] = Field(description="Best first.")
