"""The search request and its answers (similar detections), models of the query API.

See :mod:`cloud.api.schemas` for the conventions (times, boxes) and the catalog's models.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from cloud.api.grouping import MAX_CANDIDATES, Grouping
from cloud.api.params import MAX_FILTER_ITEMS, CameraId, ClassId, DetectionId, Time
from cloud.api.schemas import Detection, _Out

MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
"""Largest uploaded image (bytes, decoded)."""
MAX_K: Final = 100
MAX_TEXT: Final = 500
"""Characters of a text query."""


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
