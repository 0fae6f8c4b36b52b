"""The analytics routes: a camera's scene (set, current, history), events, count series.

- ``PUT /v1/cameras/{camera_id}/scene``: the JSON body is the scene (the YAML file's content;
  see ``deploy/scenes/README.md``); every problem is a 422 detail naming its field
  (``body.lines.gate.points[1][0]``). The camera's current scene from then on; the same scene
  again changes nothing (``changed: false``).
- ``GET /v1/cameras/{camera_id}/scene`` and ``.../scenes`` (history, newest first).
- ``GET /v1/events``: what the runner stored, newest first, keyset-paged like detections;
  by default every kind but ``speed`` (a per-track measurement, updated as the track grows).
- ``GET /v1/analytics/counts``: crossings of a line per direction, or entries of a zone, per
  class and time bucket (``bucket`` like ``5m``, at most :data:`MAX_BUCKETS` buckets, aligned
  to the epoch).
- ``GET /v1/analytics/congestion``: a camera's congestion windows (one zone, or all), newest
  first, keyset-paged like events (:mod:`cloud.analytics.congestion_store`).

Token-protected like the rest of the API (mounted through ``ApiDeps.extra_routes``); blocking
work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.engine import Engine

from cloud.analytics import queries
from cloud.analytics.scenes import (
    InvalidScene,
    UnknownCamera,
    camera_exists,
    current_scene,
    put_scene,
    scene_history,
    subjects,
    validate_scene,
)
from cloud.api.analytics_schemas import (
    AnalyticsEvent,
    CongestionPage,
    CongestionWindow,
    Counts,
    EventKindName,
    EventPage,
    SceneHistory,
    SceneOut,
    SceneSet,
)
from cloud.api.errors import InvalidParameter, NotFound
from cloud.api.params import CameraId
from cloud.api.query import Cameras, Classes, Cursor, From, PageSize, To
from cloud.api.schemas import ErrorResponse
from cloud.catalog import decode_cursor, encode_cursor
from cloud.catalog_records import InvalidCursor
from cloud.config import parse_age

MAX_BUCKETS: Final = 2000
DEFAULT_SPAN_US: Final = 24 * 3600 * 1_000_000
DEFAULT_KINDS: Final = (
    "line_crossing",
    "zone_entry",
    "zone_exit",
    "stopped_vehicle",
    "wrong_way",
    "congestion",
)
_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such camera, or no scene for it."}
}


def _now_us() -> int:
    return time.time_ns() // 1000


class AnalyticsService:
    """What the analytics routes do, without HTTP (blocking: run in worker threads)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _camera(self, camera_id: int) -> None:
        with self.engine.connect() as conn:
            if not camera_exists(conn, camera_id):
                raise NotFound(f"no camera with id {camera_id}")

    def set_scene(self, camera_id: int, body: Any) -> SceneSet:
        try:
            scene = validate_scene(body)
        except InvalidScene as exc:
            raise RequestValidationError(
                [{"loc": ("body", *loc), "msg": msg, "type": "value_error"}
                 for loc, msg in exc.problems]
            ) from None  # fmt: skip
        try:
            stored, changed = put_scene(self.engine, camera_id, scene, _now_us())
        except UnknownCamera as exc:
            raise NotFound(str(exc)) from None
        return SceneSet(**SceneOut.of(stored).model_dump(), changed=changed)

    def scene(self, camera_id: int) -> SceneOut:
        self._camera(camera_id)
        with self.engine.connect() as conn:
            found = current_scene(conn, camera_id)
        if found is None:
            raise NotFound(f"camera {camera_id} has no scene (PUT one)")
        return SceneOut.of(found)

    def scenes(self, camera_id: int, limit: int, cursor: str | None) -> SceneHistory:
        self._camera(camera_id)
        before = None
        if cursor:
            try:
                before = decode_cursor(cursor)[1]
            except InvalidCursor as exc:
                raise InvalidParameter("cursor", str(exc)) from None
        with self.engine.connect() as conn:
            rows = scene_history(conn, camera_id, limit + 1, before)
        items = rows[:limit]
        more = len(rows) > limit and items
        return SceneHistory(
            items=[SceneOut.of(s) for s in items],
            next_cursor=encode_cursor(items[-1].created_us, items[-1].id) if more else None,
        )

    def events(
        self,
        kinds: list[str] | None,
        camera_ids: list[int] | None,
        classes: list[int] | None,
        from_us: int | None,
        to_us: int | None,
        limit: int,
        cursor: str | None,
    ) -> EventPage:
        if from_us is not None and to_us is not None and from_us >= to_us:
            raise InvalidParameter("from", "must be before `to`")
        try:
            with self.engine.connect() as conn:
                items, next_cursor = queries.events_page(
                    conn,
                    kinds or DEFAULT_KINDS,
                    camera_ids,
                    classes,
                    from_us,
                    to_us,
                    limit,
                    cursor,
                )
        except InvalidCursor as exc:
            raise InvalidParameter("cursor", str(exc)) from None
        return EventPage(items=[AnalyticsEvent.of(e) for e in items], next_cursor=next_cursor)

    def counts(
        self,
        camera_id: int,
        line: str | None,
        zone: str | None,
        classes: list[int] | None,
        from_us: int | None,
        to_us: int | None,
        bucket: str,
    ) -> Counts:
        if (line is None) == (zone is None):
            raise InvalidParameter("line", "give exactly one of `line` and `zone`")
        bucket_us = round(parse_age(bucket) * 1e6)
        if bucket_us < 1_000_000:
            raise InvalidParameter("bucket", "must be at least 1 s")
        to_us = _now_us() if to_us is None else to_us
        from_us = to_us - DEFAULT_SPAN_US if from_us is None else from_us
        if from_us >= to_us:
            raise InvalidParameter("from", "must be before `to`")
        start = from_us // bucket_us * bucket_us
        n = -(-(to_us - start) // bucket_us)
        if n > MAX_BUCKETS:
            raise InvalidParameter(
                "bucket",
                f"{bucket!r} makes {n} buckets from `from` to `to`, at most {MAX_BUCKETS}: "
                "use a larger bucket or a shorter range",
            )
        self._camera(camera_id)
        with self.engine.connect() as conn:
            lines, zones = subjects(conn, camera_id)
            if not lines and not zones:
                raise NotFound(f"camera {camera_id} has no scene (PUT one)")
            if line is not None and line not in lines:
                raise InvalidParameter(
                    "line", f"camera {camera_id} has no line {line!r} ({_names(lines)})"
                )
            if zone is not None and zone not in zones:
                raise InvalidParameter(
                    "zone", f"camera {camera_id} has no zone {zone!r} ({_names(zones)})"
                )
            kind, subject = ("line_crossing", line) if line is not None else ("zone_entry", zone)
            assert subject is not None
            rows = queries.count_buckets(
                conn, camera_id, kind, subject, classes, start, start + n * bucket_us, bucket_us
            )
        return Counts.of(camera_id, (line, zone), start, bucket_us, n, rows)

    def congestion(
        self,
        camera_id: int,
        zone: str | None,
        from_us: int | None,
        to_us: int | None,
        limit: int,
        cursor: str | None,
    ) -> CongestionPage:
        if from_us is not None and to_us is not None and from_us >= to_us:
            raise InvalidParameter("from", "must be before `to`")
        self._camera(camera_id)
        try:
            with self.engine.connect() as conn:
                _lines, zones = subjects(conn, camera_id)
                if not zones:
                    raise NotFound(f"camera {camera_id} has no scene with a zone (PUT one)")
                if zone is not None and zone not in zones:
                    raise InvalidParameter(
                        "zone", f"camera {camera_id} has no zone {zone!r} ({_names(zones)})"
                    )
                items, next_cursor = queries.congestion_page(
                    conn, camera_id, zone, from_us, to_us, limit, cursor
                )
        except InvalidCursor as exc:
            raise InvalidParameter("cursor", str(exc)) from None
        return CongestionPage(
            items=[CongestionWindow.of(r) for r in items], next_cursor=next_cursor
        )


def _names(names: set[str]) -> str:
    return "its scenes have: " + ", ".join(sorted(names)) if names else "none in its scenes"


CameraPath = Annotated[CameraId, Path()]
Subject = Annotated[str | None, Query(pattern=_NAME, max_length=64)]


def build_analytics_router(
    service: AnalyticsService, route_class: type[APIRoute] = APIRoute
) -> APIRouter:
    """The analytics routes; the API's token check applies where they are mounted."""
    router = APIRouter(route_class=route_class)

    @router.put(
        "/v1/cameras/{camera_id}/scene",
        response_model=SceneSet,
        responses=_NOT_FOUND,
        tags=["analytics"],
    )
    async def set_scene(
        camera_id: CameraPath,
        scene: Annotated[
            dict[str, Any],
            Body(description="The scene: frame, lines, zones, calibration (see the docs)."),
        ],
    ) -> SceneSet:
        """Set the camera's scene (lines, zones, calibration); it applies from now on."""
        return await asyncio.to_thread(service.set_scene, camera_id, scene)

    @router.get(
        "/v1/cameras/{camera_id}/scene",
        response_model=SceneOut,
        responses=_NOT_FOUND,
        tags=["analytics"],
    )
    async def scene(camera_id: CameraPath) -> SceneOut:
        """The camera's current scene and its version."""
        return await asyncio.to_thread(service.scene, camera_id)

    @router.get(
        "/v1/cameras/{camera_id}/scenes",
        response_model=SceneHistory,
        responses=_NOT_FOUND,
        tags=["analytics"],
    )
    async def scenes(
        camera_id: CameraPath, limit: PageSize = 100, cursor: Cursor = None
    ) -> SceneHistory:
        """Every scene the camera had, newest (current) first."""
        return await asyncio.to_thread(service.scenes, camera_id, limit, cursor)

    @router.get("/v1/events", response_model=EventPage, tags=["analytics"])
    async def events(
        kind: Annotated[
            list[EventKindName] | None,
            Query(max_length=7, description="Kinds (repeatable); default: every kind but speed."),
        ] = None,
        camera: Cameras = None,
        class_: Classes = None,
        from_: From = None,
        to: To = None,
        limit: PageSize = 100,
        cursor: Cursor = None,
    ) -> EventPage:
        """Line crossings, zone entries and exits, incidents, zones' congestion changes (and
        speeds when asked for), newest first, one page at a time (follow `next_cursor`)."""
        kinds: list[str] | None = list(kind) if kind else None
        return await asyncio.to_thread(
            service.events, kinds, camera, class_, from_, to, limit, cursor
        )

    @router.get(
        "/v1/analytics/counts", response_model=Counts, responses=_NOT_FOUND, tags=["analytics"]
    )
    async def counts(
        camera: Annotated[CameraId, Query(description="The camera.")],
        line: Subject = None,
        zone: Subject = None,
        class_: Classes = None,
        from_: From = None,
        to: To = None,
        bucket: Annotated[
            str,
            Query(
                pattern=r"^\d{1,6}(\.\d{1,6})?\s?(s|m|h|d)$",
                description="Bucket length: 30s, 5m, 1h, 1d.",
            ),
        ] = "5m",
    ) -> Counts:
        """Crossings of `line` per direction, or entries of `zone`, per class and bucket;
        `to` defaults to now and `from` to 24 h before `to`."""
        return await asyncio.to_thread(
            service.counts, camera, line, zone, class_, from_, to, bucket
        )

    @router.get(
        "/v1/analytics/congestion",
        response_model=CongestionPage,
        responses=_NOT_FOUND,
        tags=["analytics"],
    )
    async def congestion(
        camera: Annotated[CameraId, Query(description="The camera.")],
        zone: Subject = None,
        from_: From = None,
        to: To = None,
        limit: PageSize = 100,
        cursor: Cursor = None,
    ) -> CongestionPage:
        """Congestion per zone and time window (occupancy, mean speed, vehicles, level; open
        windows marked provisional), windows starting in [`from`, `to`), newest first, one
        page at a time (follow `next_cursor`). A window without an item had no vehicle in the
        zone."""
        return await asyncio.to_thread(service.congestion, camera, zone, from_, to, limit, cursor)

    return router
