"""The HTTP surface of the query API: parameters, auth and status codes; no logic.

Handlers are ``async`` and hand every blocking call (database, index, encoder) to a worker
thread, so the event loop keeps serving the edges' sessions while a query runs. Every route
but ``/healthz`` (and ``/metrics`` or ``/openapi.json`` and ``/docs`` when configured public)
needs a bearer token.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cloud.api.auth import bearer_dependency
from cloud.api.deps import ApiDeps
from cloud.api.descriptions import DescriptionService, build_descriptions_router
from cloud.api.docs import add_docs_routes
from cloud.api.errors import InvalidParameter
from cloud.api.grouping import Grouping
from cloud.api.metrics import ApiMetrics, timed_route
from cloud.api.params import MAX_FILTER_ITEMS, CameraId, ClassId, DetectionId, Time, TrackId
from cloud.api.path_schemas import ObjectsInView, TrackPath
from cloud.api.query import Cameras, Classes, Cursor, From, PageSize, To
from cloud.api.schemas import (
    CameraList,
    Detection,
    DetectionPage,
    ErrorResponse,
    Health,
    Stats,
    Track,
)
from cloud.api.search_schemas import MAX_IMAGE_BYTES, MAX_K, SearchRequest, SearchResponse
from cloud.api.service import QueryService, make_filter
from cloud.api.text_search import TextSearchResponse, TextSearchService
from cloud.describe.store import DescriptionStore

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No or malformed bearer token."},
    403: {"model": ErrorResponse, "description": "Unknown token."},
    422: {"model": ErrorResponse, "description": "A parameter is invalid (the message names it)."},
}
GROUP_FORM = (
    "track: one hit per track, its best-scoring sighting (k tracks); detection: the raw "
    "nearest detections."
)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}
_SEARCH_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such detection, or no index for the space."},
    409: {
        "model": ErrorResponse,
        "description": "No query encoder, a codec not loaded, or a text encoder whose vectors "
        "are not as wide as its space's.",
    },
}


def build_api_router(deps: ApiDeps) -> APIRouter:
    """The query API's routes; the app must also call ``install_error_handlers``."""
    service = QueryService(deps)
    descriptions = DescriptionService(DescriptionStore(deps.catalog.engine))
    text_search = TextSearchService(descriptions, service, deps.catalog, deps.text_encoder)
    route_class = timed_route(ApiMetrics(deps.metrics_registry))
    token = Depends(bearer_dependency(deps.token_digests, deps.metrics_registry))
    public = APIRouter(route_class=route_class)
    api = APIRouter(route_class=route_class, dependencies=[token], responses=_ERRORS)

    @public.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "The database does not answer."}},
        tags=["health"],
    )
    async def healthz() -> JSONResponse:
        """Readiness: 200 when the database answers, 503 otherwise; no token needed."""
        status, health = await asyncio.to_thread(service.health)
        return JSONResponse(health.model_dump(mode="json"), status_code=status)

    metrics_router = public if deps.metrics_public else api
    add_docs_routes(public if deps.docs_public else api, swagger_page=deps.docs_public)

    @metrics_router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
        tags=["health"],
    )
    async def metrics() -> Response:
        """Prometheus metrics: messages, bytes, lag, index size, query latency."""
        body = await asyncio.to_thread(generate_latest, deps.metrics_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @api.get("/v1/cameras", response_model=CameraList, tags=["catalog"])
    async def cameras() -> CameraList:
        """Every camera, with its detection count and first/last detection time."""
        return await asyncio.to_thread(service.cameras)

    @api.get("/v1/detections", response_model=DetectionPage, tags=["catalog"])
    async def detections(
        camera: Cameras = None,
        class_: Classes = None,
        from_: From = None,
        to: To = None,
        limit: PageSize = 100,
        cursor: Cursor = None,
    ) -> DetectionPage:
        """Detections, newest first, one page at a time (follow `next_cursor`)."""
        where = make_filter(camera, class_, from_, to)
        return await asyncio.to_thread(service.detections, where, limit, cursor)

    @api.get(
        "/v1/detections/{detection_id}",
        response_model=Detection,
        responses=_NOT_FOUND,
        tags=["catalog"],
    )
    async def detection(detection_id: Annotated[DetectionId, Path()]) -> Detection:
        """One detection."""
        return await asyncio.to_thread(service.detection, detection_id)

    @api.get("/v1/tracks/{track_id}", response_model=Track, responses=_NOT_FOUND, tags=["catalog"])
    async def track(track_id: Annotated[TrackId, Path()]) -> Track:
        """A track with its detections (oldest first, at most 1000)."""
        return await asyncio.to_thread(service.track, track_id)

    @api.get(
        "/v1/tracks/{track_id}/path",
        response_model=TrackPath,
        responses=_NOT_FOUND,
        tags=["catalog"],
    )
    async def track_path(
        track_id: Annotated[TrackId, Path()],
        step_ms: Annotated[
            int, Query(ge=1, le=3_600_000, description="Interpolated box spacing (ms).")
        ] = 40,
    ) -> TrackPath:
        """A track's boxes: its sightings, and between them a box every `step_ms`
        interpolated in time (flagged `interpolated`): how a track sent as a simplified path
        (TrackSummary) is redrawn."""
        return await asyncio.to_thread(service.track_path, track_id, step_ms)

    @api.get("/v1/objects-in-view", response_model=ObjectsInView, tags=["catalog"])
    async def objects_in_view(
        from_: Annotated[Time, Query(alias="from", description="Start of the first window.")],
        to: Annotated[Time, Query(description="End of the last window (exclusive).")],
        camera: Cameras = None,
        window_s: Annotated[float, Query(gt=0, le=86_400, description="Window length (s).")] = 10.0,
    ) -> ObjectsInView:
        """Objects in view per class: per window, the mean number of tracks of each class in
        view, from the tracks' first and last sightings (no per-frame counts needed)."""
        return await asyncio.to_thread(service.objects_in_view, camera, from_, to, window_s)

    @api.get("/v1/stats", response_model=Stats, tags=["catalog"])
    async def stats() -> Stats:
        """Row counts, embedding spaces, each edge's progress and the database size."""
        return await asyncio.to_thread(service.stats)

    @api.post(
        "/v1/search",
        response_model=SearchResponse | TextSearchResponse,
        responses=_SEARCH_ERRORS,
        tags=["search"],
    )
    async def search(request: SearchRequest) -> SearchResponse | TextSearchResponse:
        """Similar detections, by a detection's embedding or by an image (base64 in JSON):
        by default one hit per track (its best sighting; `group`), and from a detection
        other tracks only (`exclude_own_track`); or, with `text`, descriptions holding those
        words (`hits`, scored, best first) and, when the cloud has a text encoder (an open_clip
        `encoder`), detections whose crops match the text (`crops`, one per track; null with
        `crops_unavailable` saying why otherwise)."""
        f = request.filter
        where = make_filter(*((f.camera, f.class_, f.from_, f.to) if f else (None,) * 4))
        if request.text is not None:
            return await asyncio.to_thread(text_search.search, request.text, request.k, where)
        if request.detection_id is not None:
            return await asyncio.to_thread(
                service.search_detection,
                request.detection_id,
                request.k,
                where,
                request.space,
                request.group,
                request.excludes_own_track(),
            )
        data = await asyncio.to_thread(request.image_bytes)
        return await asyncio.to_thread(
            service.search_image, data, request.k, where, request.space, request.group
        )

    @api.post(
        "/v1/search/image",
        response_model=SearchResponse,
        responses=_SEARCH_ERRORS,
        tags=["search"],
    )
    async def search_image(
        image: Annotated[UploadFile, File(description="PNG or JPEG of the object (a crop).")],
        k: Annotated[int, Form(ge=1, le=MAX_K, description="Hits to return at most.")] = 10,
        camera: Annotated[list[CameraId] | None, Form(max_length=MAX_FILTER_ITEMS)] = None,
        class_: Annotated[
            list[ClassId] | None, Form(alias="class", max_length=MAX_FILTER_ITEMS)
        ] = None,
        from_: Annotated[Time | None, Form(alias="from")] = None,
        to: Annotated[Time | None, Form()] = None,
        space: Annotated[str | None, Form(max_length=200)] = None,
        group: Annotated[Grouping, Form(description=GROUP_FORM)] = "track",
    ) -> SearchResponse:
        """Similar detections to an uploaded image (multipart/form-data, for curl); one hit
        per track by default (`group`)."""
        where = make_filter(camera, class_, from_, to)
        data = await image.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise InvalidParameter("image", f"larger than {MAX_IMAGE_BYTES} bytes")
        return await asyncio.to_thread(service.search_image, data, k, where, space, group)

    api.include_router(build_descriptions_router(descriptions, route_class))
    for build in deps.extra_routes:
        api.include_router(build(route_class))
    root = APIRouter()
    root.include_router(public)
    root.include_router(api)
    return root
