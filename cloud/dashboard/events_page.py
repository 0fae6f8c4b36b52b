"""The Events page: traffic analytics in the dashboard.

``GET /events`` lists what the analytics runner found (line crossings, zone entries and exits,
stopped vehicles, wrong-way driving, a zone's congestion level changing: no track, the new
level in the direction column), newest first, a page at a time, filtered by camera, kind
(the kinds of ``DEFAULT_KINDS`` and speed), class and time from the URL; with one camera
chosen, each of its scene's lines gets a chart of crossings per class and direction over
the last hour (``AnalyticsService.counts``, the same figures as ``GET /v1/analytics/counts``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.requests import Request

from cloud.analytics.scenes import subjects
from cloud.api.analytics import DEFAULT_KINDS
from cloud.api.errors import ApiError
from cloud.dashboard.deps import DashboardDeps
from cloud.dashboard.filters import read_filters
from cloud.dashboard.guard import require_session
from cloud.dashboard.svg import stacked_bars
from cloud.dashboard.web import Renderer

EVENTS_PAGE: Final = 50
KINDS: Final = (*DEFAULT_KINDS, "speed")


def build_events_router(deps: DashboardDeps, renderer: Renderer) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def line_charts(camera_id: int) -> list[dict[str, Any]]:
        assert deps.analytics is not None
        with deps.catalog.engine.connect() as conn:
            lines, _zones = subjects(conn, camera_id)
        charts = []
        for line in sorted(lines):
            counts = deps.analytics.counts(camera_id, line, None, None, None, None, "5m")
            labels = [b.strftime("%H:%M") for b in counts.buckets]
            series = [
                (f"{s.class_name or 'unknown'} {s.direction}", s.counts) for s in counts.series
            ]
            charts.append(
                {
                    "line": line,
                    "totals": counts.totals,
                    "chart": stacked_bars(
                        series, labels, f"Crossings of line {line} per 5 minutes, last day"
                    ),
                }
            )
        return charts

    @router.get("/events")
    async def events(
        request: Request, kind: str | None = None, cursor: str | None = None
    ) -> Response:
        session = await asyncio.to_thread(require_session, request, deps.sessions)
        f = read_filters(request.query_params)
        cameras = await asyncio.to_thread(deps.catalog.cameras)
        context: dict[str, Any] = {
            "title": "Events",
            "session": session,
            "filters": f,
            "cameras": cameras,
            "kinds": KINDS,
            "kind": kind if kind in KINDS else "",
            "available": deps.analytics is not None,
            "items": [],
            "next_cursor": None,
            "charts": [],
            "error": None,
        }
        if deps.analytics is None:
            return renderer.page(request, "events.html", context)
        try:
            page = await asyncio.to_thread(
                deps.analytics.events,
                [context["kind"]] if context["kind"] else None,
                f.cameras or None,
                f.classes or None,
                f.from_us,
                f.to_us,
                EVENTS_PAGE,
                cursor,
            )
            context["items"], context["next_cursor"] = page.items, page.next_cursor
            if len(f.cameras) == 1:
                context["charts"] = await asyncio.to_thread(line_charts, f.cameras[0])
        except ApiError as exc:
            context["error"] = exc.message
            return renderer.page(request, "events.html", context, exc.status)
        return renderer.page(request, "events.html", context)

    return router
