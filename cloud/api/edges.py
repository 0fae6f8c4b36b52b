"""``GET /v1/edges`` and ``GET /v1/edges/{edge_id}``: each edge's link and health, now.

The figures are the link monitor's (:class:`cloud.linkmon.LinkMonitor`): what the cloud measured
of the edge's sessions and messages, and what the edge's last heartbeat reported of itself
(backlog, spool, reconnects, ladder rung, and its health summary: capture and pipeline fps,
dropped frames, acknowledgement latency, ...). Kept in memory: a restarted cloud knows an edge
again from its next session, message or heartbeat. Token-protected like the rest of the API
(mounted through ``ApiDeps.extra_routes``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.errors import NotFound
from cloud.api.params import to_datetime
from cloud.api.schemas import ErrorResponse
from cloud.linkmon import EdgeLink, LinkMonitor
from shared.limits import MAX_ID_CHARS
from shared.messages import ID_PATTERN

EdgeId = Annotated[
    str,
    Path(pattern=f"^{ID_PATTERN}$", max_length=MAX_ID_CHARS, description="The edge's id."),
]

_HEALTH_DOC = (
    "The edge's own figures from its last heartbeat (name -> number; empty before one): "
    "uptime_s; capture_fps and pipeline_fps (last 5 s); frames, dropped and skipped (frames "
    "processed, frames dropped, embeddings skipped since the edge started); tracks_active, "
    "tracks_started; messages and bytes made, refused (by a full spool), evicted (from it), "
    "acked; goodput_bytes_s (last 5 s); ack_ms_p50 and ack_ms_p95 (the last 1,000 "
    "acknowledgements). An edge sends those it has (a replay has no frame figures). Numbers "
    "are float32: counts are exact up to 2^24."
)


def _time(us: int | None) -> datetime | None:
    return None if us is None else to_datetime(us)


class EdgeStatus(BaseModel):
    """One edge's link and health as this cloud sees it now."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "edge_id": "edge-01",
                    "connected": True,
                    "transport": "webrtc",
                    "connected_since": "2026-11-24T09:58:00Z",
                    "last_message": "2026-11-24T10:00:00.120000Z",
                    "last_heartbeat": "2026-11-24T09:59:59.500000Z",
                    "bytes_per_s": 5210.4,
                    "latency_p95_ms": 182.0,
                    "rung": "f16",
                    "backlog": 3,
                    "rate_bps": 200000.0,
                    "spool_bytes": 1843,
                    "reconnects": 1,
                    "sessions": 2,
                    "health": {"capture_fps": 25.0, "pipeline_fps": 24.8, "dropped": 12.0},
                }
            ]
        },
    )

    edge_id: str = Field(description="The edge's id.")
    connected: bool = Field(description="A session of the edge is open now.")
    transport: str = Field(description="webrtc or websocket: the current or last session's.")
    connected_since: datetime | None = Field(description="When the open session started.")
    last_message: datetime | None = Field(description="When the cloud last heard from it.")
    last_heartbeat: datetime | None = Field(description="When its last heartbeat arrived.")
    bytes_per_s: float = Field(description="Bytes of data frames per second (last 60 s).")
    latency_p95_ms: float | None = Field(
        description="95th percentile of capture-to-arrival latency (ms, last 60 s)."
    )
    rung: str = Field(description="Codec of its ladder rung now (empty: unknown).")
    backlog: int | None = Field(description="Messages its spool holds (last heartbeat).")
    rate_bps: float | None = Field(description="Rate it sends at, bit/s (last heartbeat).")
    spool_bytes: int | None = Field(description="Bytes its spool holds (last heartbeat).")
    reconnects: int | None = Field(description="Sessions it opened after its first one.")
    sessions: int = Field(description="Sessions this cloud saw it open since it started.")
    health: dict[str, float] = Field(description=_HEALTH_DOC)

    @classmethod
    def of(cls, link: EdgeLink) -> EdgeStatus:
        return cls(
            edge_id=link.edge_id,
            connected=link.connected,
            transport=link.transport,
            connected_since=_time(link.connected_since_us),
            last_message=_time(link.last_message_us),
            last_heartbeat=_time(link.last_heartbeat_us),
            bytes_per_s=link.bytes_per_s,
            latency_p95_ms=link.latency_p95_ms,
            rung=link.rung,
            backlog=link.backlog,
            rate_bps=link.rate_bps,
            spool_bytes=link.spool_bytes,
            reconnects=link.reconnects,
            sessions=link.sessions,
            health=dict(link.health),
        )


class EdgeList(BaseModel):
    """Every edge this cloud has heard from since it started, by id."""

    model_config = ConfigDict(frozen=True)

    edges: list[EdgeStatus]


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such edge heard from since the start."}
}


def build_edges_router(link: LinkMonitor, route_class: type[APIRoute] = APIRoute) -> APIRouter:
    """The two routes over ``link``; the API's token check applies where they are mounted."""
    router = APIRouter(route_class=route_class)

    @router.get("/v1/edges", response_model=EdgeList, tags=["edges"])
    async def edges() -> EdgeList:
        """Each edge's link and health now (connected or not), by edge id."""
        rows = await asyncio.to_thread(link.overview)
        return EdgeList(edges=[EdgeStatus.of(row) for row in rows])

    @router.get(
        "/v1/edges/{edge_id}", response_model=EdgeStatus, responses=_NOT_FOUND, tags=["edges"]
    )
    async def edge(edge_id: EdgeId) -> EdgeStatus:
        """One edge's link and health now."""
        row = await asyncio.to_thread(link.edge, edge_id)
        if row is None:
            raise NotFound(f"no edge {edge_id!r} heard from since this cloud started")
        return EdgeStatus.of(row)

    return router
