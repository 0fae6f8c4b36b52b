"""Overview, Live, Descriptions and Link pages, and the live feed's event stream."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse
from starlette.requests import Request

from cloud.api.errors import ApiError
from cloud.dashboard.deps import DashboardDeps
from cloud.dashboard.filters import read_filters
from cloud.dashboard.guard import require_session
from cloud.dashboard.live import LiveFeed
from cloud.dashboard.queries import class_buckets, recent_tracks
from cloud.dashboard.svg import line_chart, stacked_bars
from cloud.dashboard.web import Renderer, class_name
from cloud.linkseries import LinkSample

EDGES_PAGE: Final = 50
LIVE_BACKLOG: Final = 20
DESCRIPTIONS_PAGE: Final = 50
HOUR_US: Final = 3_600_000_000
BUCKET_US: Final = 300_000_000


def _now_us() -> int:
    return time.time_ns() // 1000


def _hhmm(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).strftime("%H:%M")


def build_pages_router(deps: DashboardDeps, renderer: Renderer, feed: LiveFeed) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def overview(request: Request, page: int = 1) -> Response:
        session = await asyncio.to_thread(require_session, request, deps.sessions)
        f = read_filters(request.query_params)
        now = _now_us()
        stats = await asyncio.to_thread(deps.query.stats)
        cameras = await asyncio.to_thread(deps.catalog.cameras)
        start = now - HOUR_US
        counts = await asyncio.to_thread(
            class_buckets, deps.catalog.engine, start - start % BUCKET_US, now, BUCKET_US, f.cameras
        )
        links = {link.edge_id: link for link in deps.link.overview()} if deps.link else {}
        connected = set(deps.connected())
        edge_ids = sorted({p.id for p in stats.per_edge} | set(links) | connected)
        pages = max(1, -(-len(edge_ids) // EDGES_PAGE))
        page = min(max(page, 1), pages)
        shown = edge_ids[(page - 1) * EDGES_PAGE : page * EDGES_PAGE]
        progress = {p.id: p for p in stats.per_edge}
        rows = [
            {
                "id": edge,
                "connected": edge in connected,
                "link": links.get(edge),
                "progress": progress.get(edge),
                "cameras": [c for c in cameras if c.edge_id == edge],
            }
            for edge in shown
        ]
        order = sorted(counts.counts, key=lambda c: -sum(counts.counts[c]))
        series = [(class_name(c), counts.counts[c]) for c in order]
        labels = [_hhmm(counts.start_us + i * BUCKET_US) for i in range(counts.buckets)]
        chart = stacked_bars(
            series,
            labels,
            "Road users (tracks) first seen per class, per 5 minutes, over the last hour",
        )
        return renderer.page(
            request,
            "overview.html",
            {
                "title": "Overview",
                "session": session,
                "stats": stats,
                "rows": rows,
                "page": page,
                "pages": pages,
                "chart": chart,
                "series": series,
                "bucket_labels": labels,
                "filters": f,
                "cameras": cameras,
                "now_us": now,
                "link_known": deps.link is not None,
            },
        )

    @router.get("/live")
    async def live(request: Request) -> Response:
        session = await asyncio.to_thread(require_session, request, deps.sessions)
        rows = await asyncio.to_thread(recent_tracks, deps.catalog.engine, LIVE_BACKLOG)
        return renderer.page(
            request,
            "live.html",
            {
                "title": "Live",
                "session": session,
                "tracks": rows,
                "after": rows[0].id if rows else 0,
                "decoder": deps.decoder is not None,
            },
        )

    @router.get("/ui/live/events")
    async def live_events(request: Request, after: int | None = None) -> StreamingResponse:
        await asyncio.to_thread(require_session, request, deps.sessions, False)
        last = request.headers.get("last-event-id", "")
        start = int(last) if last.isdigit() else after
        return StreamingResponse(
            feed.stream(start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/descriptions")
    async def descriptions(request: Request, cursor: str | None = None) -> Response:
        session = await asyncio.to_thread(require_session, request, deps.sessions)
        f = read_filters(request.query_params)
        error = None
        try:
            found = await asyncio.to_thread(
                deps.descriptions.page, f.search_filter(), DESCRIPTIONS_PAGE, cursor
            )
            items, next_cursor = found.items, found.next_cursor
        except ApiError as exc:
            items, next_cursor, error = [], None, exc.message
        by_camera: dict[str, list[Any]] = {}
        for d in items:
            by_camera.setdefault(d.camera or "all cameras", []).append(d)
        cameras = await asyncio.to_thread(deps.catalog.cameras)
        return renderer.page(
            request,
            "descriptions.html",
            {
                "title": "Descriptions",
                "session": session,
                "by_camera": by_camera,
                "next_cursor": next_cursor,
                "filters": f,
                "cameras": cameras,
                "error": error,
            },
        )

    @router.get("/link")
    async def link(request: Request, edge: str | None = None) -> Response:
        session = await asyncio.to_thread(require_session, request, deps.sessions)
        links = list(deps.link.overview()) if deps.link else []
        edge_ids = [x.edge_id for x in links]
        chosen = edge if edge in edge_ids else (edge_ids[0] if edge_ids else None)
        charts: dict[str, Any] = {}
        steps: list[Any] = []
        samples: list[LinkSample] = []
        if deps.link is not None and chosen is not None:
            samples = list(deps.link.series(chosen))
            steps = list(deps.link.codec_steps(chosen))
            charts = link_charts(samples)
        return renderer.page(
            request,
            "link.html",
            {
                "title": "Link",
                "session": session,
                "links": links,
                "edge": chosen,
                "asked": edge,
                "charts": charts,
                "steps": steps,
                "samples": samples[-30:],
                "monitor": deps.link is not None,
            },
        )

    return router


def link_charts(samples: list[LinkSample]) -> dict[str, Any]:
    """Goodput, latency and backlog over time, from the link monitor's samples."""
    xs = [s.start_us / 1e6 for s in samples]
    ends = (_hhmm(samples[0].start_us), _hhmm(samples[-1].end_us)) if samples else None

    def chart(values: list[float | None], label: str, unit: str) -> Any:
        return line_chart(list(zip(xs, values, strict=True)), label, unit, x_labels=ends)

    return {
        "goodput": chart(
            [s.bytes_per_s if s.frames else None for s in samples], "Goodput over time", "B/s"
        ),
        "latency": chart(
            [s.latency_p95_ms for s in samples],
            "Latency p95 (capture to arrival) over time",
            "ms",
        ),
        "backlog": chart(
            [None if s.backlog is None else float(s.backlog) for s in samples],
            "Edge backlog (messages) over time",
            "msgs",
        ),
    }
