"""Descriptions in the query API: list them by camera and time, search them by text.

``GET /v1/descriptions`` lists what the describer wrote (newest window first, paged like the
detections), ``GET /v1/descriptions/{id}`` returns one, and ``POST /v1/search`` with
``{"text": ...}`` (see :class:`cloud.api.search_schemas.SearchRequest`) finds scored descriptions,
best first (:mod:`cloud.api.text_search` answers with them and with crops). A description made
without a model says so: ``describer`` is ``rules`` and ``rules`` is true.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.api.errors import InvalidParameter, NotFound
from cloud.api.params import INT64_MAX, Time, to_datetime
from cloud.api.query import Cameras, Cursor, PageSize
from cloud.api.service import make_filter
from cloud.catalog_records import InvalidCursor
from cloud.describe.base import RULES
from cloud.describe.schema import Incident as IncidentModel
from cloud.describe.store import DescriptionRecord, DescriptionStore
from cloud.index.base import SearchFilter

DescriptionId = Annotated[int, Field(ge=1, le=INT64_MAX, description="A description's id.")]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Incident(_Out):
    kind: str = Field(description="stopped_vehicle, queue, wrong_way, pedestrian_on_road, ...")
    description: str
    track_ids: list[int] = Field(description="Tracks involved (/v1/tracks/{id}).")


class Description(_Out):
    """What the describer said about one camera and time window."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 17,
                    "camera_id": 3,
                    "camera": "north-gate",
                    "start": "2026-11-24T10:00:00Z",
                    "end": "2026-11-24T10:01:00Z",
                    "created": "2026-11-24T10:01:12Z",
                    "describer": "rules",
                    "rules": True,
                    "summary": "Camera north-gate, 60 s from 2026-11-24 10:00:00 UTC: ...",
                    "counts": {"person": 2, "bicycle": 0, "car": 14, "motorcycle": 0,
                               "bus": 1, "truck": 0, "other": 0},
                    "congestion": "light",
                    "incidents": [],
                    "reason": "window",
                    "image_detection_ids": [],
                }
            ]
        }
    )  # fmt: skip

    id: int
    camera_id: int | None
    camera: str | None = Field(description="The camera's name on its edge.")
    start: datetime = Field(description="Start of the window (UTC).")
    end: datetime = Field(description="End of the window (exclusive).")
    created: datetime = Field(description="When the description was made.")
    describer: str = Field(description="The model that wrote it, or `rules`.")
    rules: bool = Field(description="Made by rules from metadata, without a model.")
    summary: str = Field(description="One paragraph.")
    counts: dict[str, int] = Field(description="Distinct road users by class.")
    congestion: str | None = Field(description="free, light, moderate, heavy or standstill.")
    incidents: list[Incident]
    reason: str | None = Field(description="`window`, or the notable event that asked for it.")
    image_detection_ids: list[int] = Field(
        description="Detections whose rebuilt crops the model was shown."
    )

    @classmethod
    def of(cls, d: DescriptionRecord) -> Description:
        body = d.body
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        assert isinstance(meta, dict)
        counts = body.get("counts")
        return cls(
            id=d.id,
            camera_id=d.camera_id,
            camera=d.camera,
            start=to_datetime(d.from_us),
            end=to_datetime(d.to_us),
            created=to_datetime(d.created_us),
            describer=d.describer,
            rules=d.describer == RULES,
            summary=d.summary,
            counts={
                str(k): v
                for k, v in (counts.items() if isinstance(counts, dict) else ())
                if isinstance(v, int)
            },
            congestion=body.get("congestion") if isinstance(body.get("congestion"), str) else None,
            incidents=_incidents(body.get("incidents")),
            reason=meta.get("reason") if isinstance(meta.get("reason"), str) else None,
            image_detection_ids=[i for i in meta.get("images", ()) if isinstance(i, int)],
        )


def _incidents(raw: Any) -> list[Incident]:
    out = []
    for item in raw if isinstance(raw, list) else ():
        try:
            valid = IncidentModel.model_validate(item)
        except ValidationError:
            continue  # a row written by another version: leave the odd item out
        out.append(Incident(kind=valid.kind.value, description=valid.description,
                            track_ids=valid.track_ids))  # fmt: skip
    return out


class DescriptionPage(_Out):
    items: list[Description] = Field(description="Newest window first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null: this is the last page."
    )


class TextHit(_Out):
    score: float = Field(description="Full-text relevance: higher is better (within one answer).")
    description: Description


class DescriptionService:
    """What the description routes do, without HTTP (blocking: run in worker threads)."""

    def __init__(self, store: DescriptionStore) -> None:
        self.store = store

    def page(self, where: SearchFilter | None, limit: int, cursor: str | None) -> DescriptionPage:
        w = where or SearchFilter()
        try:
            page = self.store.page(w.cameras, w.from_us, w.to_us, limit, cursor)
        except InvalidCursor as exc:
            raise InvalidParameter("cursor", str(exc)) from None
        return DescriptionPage(
            items=[Description.of(d) for d in page.items], next_cursor=page.next_cursor
        )

    def get(self, description_id: int) -> Description:
        found = self.store.get(description_id)
        if found is None:
            raise NotFound(f"no description with id {description_id}")
        return Description.of(found)

    def search(self, text: str, k: int, where: SearchFilter | None) -> list[TextHit]:
        """Descriptions holding every word of ``text``, best first."""
        return [
            TextHit(score=score, description=Description.of(d))
            for score, d in self.store.search(text, where, k)
        ]


def build_descriptions_router(
    service: DescriptionService, route_class: type[APIRoute]
) -> APIRouter:
    """The description routes; include them in the API's token-protected router."""
    router = APIRouter(route_class=route_class)

    @router.get("/v1/descriptions", response_model=DescriptionPage, tags=["descriptions"])
    async def descriptions(
        camera: Cameras = None,
        from_: Annotated[
            Time | None, Query(alias="from", description="Windows ending after this time.")
        ] = None,
        to: Annotated[Time | None, Query(description="Windows starting before this time.")] = None,
        limit: PageSize = 100,
        cursor: Cursor = None,
    ) -> DescriptionPage:
        """Descriptions whose window overlaps [from, to), newest first, one page at a time."""
        where = make_filter(camera, None, from_, to)
        return await asyncio.to_thread(service.page, where, limit, cursor)

    @router.get(
        "/v1/descriptions/{description_id}",
        response_model=Description,
        responses={404: {"description": "No such description."}},
        tags=["descriptions"],
    )
    async def description(description_id: Annotated[DescriptionId, Path()]) -> Description:
        """One description."""
        return await asyncio.to_thread(service.get, description_id)

    return router
