"""Request metrics of the query API: latency by route, requests by route and status.

Measured by a route class rather than a middleware, so the router carries its own metrics
(middlewares belong to the app) and the label is the route's template (``/v1/tracks/{id}``),
never the raw path, which would grow the label set without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi import Request, Response
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Histogram

from cloud.api.errors import status_of

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Seconds: from an indexed row lookup to an image embedded on a busy CPU."""


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "semcom_query_seconds",
            "Query API latency (s) by route, errors included.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "semcom_api_requests",
            "Query API requests by route and status.",
            ["route", "status"],
            registry=registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.latency.labels(route).observe(seconds)
        self.requests.labels(route, str(status)).inc()


def timed_route(metrics: ApiMetrics) -> type[APIRoute]:
    """An :class:`APIRoute` class that records every request of its routes in ``metrics``."""

    class TimedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            route = self.path

            async def timed(request: Request) -> Response:
                start = time.perf_counter()
                status = 500
                try:
                    response = await handler(request)
                    status = response.status_code
                    return response
                except Exception as exc:
                    status = status_of(exc)
                    raise
                finally:
                    metrics.observe(route, status, time.perf_counter() - start)

            return timed

    return TimedRoute
