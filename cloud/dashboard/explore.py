"""Explore and Track pages, and the crops they show.

- ``GET /explore``: with ``similar=<detection id>``, detections that look like it ("find
  similar"); with ``q=<text>``, descriptions holding the words and, when a text encoder is
  configured, crops that match the text; otherwise the newest tracks. Filters (camera, class,
  time range, one hit per track or raw detections) come from the URL.
- ``POST /explore/image``: the same gallery for an uploaded image (needs a query encoder).
- ``GET /tracks/{id}``: sightings (paginated), the path over the frame's outline, class votes,
  duration, and the descriptions of the windows the track appears in.
- ``GET /ui/detections/{id}/image``: the rebuilt crop, or an SVG placeholder saying why not.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from cloud.api.errors import ApiError, InvalidParameter
from cloud.api.grouping import Grouping
from cloud.api.search_schemas import MAX_IMAGE_BYTES
from cloud.dashboard.deps import DashboardDeps
from cloud.dashboard.filters import Filters, read_filters
from cloud.dashboard.guard import MAX_FORM_BYTES, check_csrf, require_session
from cloud.dashboard.placeholder import placeholder_svg
from cloud.dashboard.queries import recent_tracks
from cloud.dashboard.svg import track_path
from cloud.dashboard.web import Renderer
from cloud.index.base import SearchFilter

SIGHTINGS_PAGE: Final = 50
BROWSE_PAGE: Final = 24


def build_explore_router(deps: DashboardDeps, renderer: Renderer) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def context(f: Filters, **more: Any) -> dict[str, Any]:
        return {
            "title": "Explore",
            "filters": f,
            "decoder": deps.decoder is not None,
            "image_search": deps.image_search,
            "text_crops": deps.text_crops,
            **more,
        }

    async def gallery_page(
        request: Request, f: Filters, session: object, status: int = 200, **found: Any
    ) -> Response:
        cameras = await asyncio.to_thread(deps.catalog.cameras)
        return renderer.page(
            request, "explore.html", context(f, session=session, cameras=cameras, **found), status
        )

    @router.get("/explore")
    async def explore(
        request: Request,
        q: str | None = None,
        similar: str | None = None,
        before: str | None = None,
    ) -> Response:
        session = await asyncio.to_thread(require_session, request, deps.sessions)
        f = read_filters(request.query_params)
        where = f.search_filter()
        group: Grouping = "detection" if f.group == "detection" else "track"
        try:
            if similar:
                detection_id = int(similar) if similar.isdigit() else 0
                if detection_id < 1:
                    raise InvalidParameter("similar", "must be a detection id")
                result = await asyncio.to_thread(
                    deps.query.search_detection, detection_id, f.k, where, None, group
                )
                return await gallery_page(
                    request, f, session, mode="similar", similar=detection_id, result=result
                )
            if q and q.strip():
                text = q.strip()[:500]
                answer = await asyncio.to_thread(deps.text_search.search, text, f.k, where)
                return await gallery_page(request, f, session, mode="text", q=text, text=answer)
        except ApiError as exc:
            return await gallery_page(
                request, f, session, mode="error", error=exc.message, status=exc.status
            )
        before_id = int(before) if before and before.isdigit() else None
        rows = await asyncio.to_thread(
            recent_tracks,
            deps.catalog.engine,
            BROWSE_PAGE + 1,
            before_id,
            f.cameras,
            f.from_us,
            f.to_us,
            f.classes,
        )
        more = rows[BROWSE_PAGE].id + 1 if len(rows) > BROWSE_PAGE else None
        return await gallery_page(
            request, f, session, mode="browse", tracks=rows[:BROWSE_PAGE], more_before=more
        )

    @router.post("/explore/image")
    async def explore_image(request: Request) -> Response:
        session = await asyncio.to_thread(require_session, request, deps.sessions)
        async with request.form(
            max_files=1, max_fields=220, max_part_size=max(MAX_IMAGE_BYTES, MAX_FORM_BYTES)
        ) as form:
            check_csrf(request, session, form)
            return await image_results(request, session, form)

    async def image_results(request: Request, session: object, form: FormData) -> Response:
        f = read_filters(form)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            return await gallery_page(
                request, f, session, mode="error", error="choose an image file", status=422
            )
        data = await upload.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            return await gallery_page(
                request,
                f,
                session,
                mode="error",
                error=f"the image is larger than {MAX_IMAGE_BYTES} bytes",
                status=413,
            )
        group: Grouping = "detection" if f.group == "detection" else "track"
        try:
            result = await asyncio.to_thread(
                deps.query.search_image, data, f.k, f.search_filter(), None, group
            )
        except ApiError as exc:
            return await gallery_page(
                request, f, session, mode="error", error=exc.message, status=exc.status
            )
        name = upload.filename or "the uploaded image"
        return await gallery_page(request, f, session, mode="image", upload=name, result=result)

    @router.get("/tracks/{track_id}")
    async def track_page(request: Request, track_id: int, page: int = 1) -> Response:
        session = await asyncio.to_thread(require_session, request, deps.sessions)
        try:
            track = await asyncio.to_thread(deps.query.track, track_id)
        except ApiError as exc:
            return renderer.page(
                request,
                "error.html",
                {"title": "Track", "message": exc.message, "session": session},
                exc.status,
            )
        cameras = await asyncio.to_thread(deps.catalog.cameras)
        camera = next((c for c in cameras if c.id == track.camera_id), None)
        first_us = int(track.first_seen.timestamp() * 1e6)
        last_us = int(track.last_seen.timestamp() * 1e6)
        around = SearchFilter(
            cameras=(track.camera_id,), from_us=first_us - 3_600_000_000, to_us=last_us + 1
        )
        windows = await asyncio.to_thread(deps.descriptions.page, around, 200, None)
        overlapping = [
            d for d in windows.items if d.start <= track.last_seen and d.end >= track.first_seen
        ]
        boxes = [(b.x1, b.y1, b.x2, b.y2) for b in track.path] or [
            (d.box.x1, d.box.y1, d.box.x2, d.box.y2) for d in reversed(track.detections)
        ]
        label = f"Path of track {track.id} over the frame of camera {track.camera}"
        pages = max(1, -(-len(track.detections) // SIGHTINGS_PAGE))
        page = min(max(page, 1), pages)
        start = (page - 1) * SIGHTINGS_PAGE
        return renderer.page(
            request,
            "track.html",
            {
                "title": f"Track {track.id}",
                "session": session,
                "track": track,
                "camera": camera,
                "path_svg": track_path(
                    boxes,
                    camera.width if camera else None,
                    camera.height if camera else None,
                    label,
                ),
                "points": len(boxes),
                "duration_s": (last_us - first_us) / 1e6,
                "sightings": track.detections[start : start + SIGHTINGS_PAGE],
                "page": page,
                "pages": pages,
                "descriptions": overlapping,
                "decoder": deps.decoder is not None,
            },
        )

    @router.get("/ui/detections/{detection_id}/image")
    async def crop(request: Request, detection_id: int) -> Response:
        await asyncio.to_thread(require_session, request, deps.sessions, False)
        if deps.decoder is None:
            return placeholder_svg("no decoder configured")
        try:
            png = await deps.decoder.png(detection_id)
        except Exception as exc:  # any reason a crop cannot be made: say it in the image
            return placeholder_svg(f"no crop: {type(exc).__name__}")
        return Response(
            png,
            media_type="image/png",
            headers={
                "Cache-Control": "private, max-age=300",
                "X-Semcom-Decoder": deps.decoder.space,
            },
        )

    return router
