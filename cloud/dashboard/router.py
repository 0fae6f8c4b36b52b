"""Composition root of the dashboard: its routers, static files and handlers, on the app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cloud.dashboard.deps import DashboardDeps
from cloud.dashboard.events_page import build_events_router
from cloud.dashboard.explore import build_explore_router
from cloud.dashboard.live import LiveFeed
from cloud.dashboard.pages import build_pages_router
from cloud.dashboard.signin import build_signin_router
from cloud.dashboard.web import Renderer, ServerTiming, install_handlers


def install_dashboard(app: FastAPI, deps: DashboardDeps) -> LiveFeed:
    """Serve the dashboard from ``app``; returns the live feed (close it at shutdown)."""
    renderer = Renderer()
    feed = LiveFeed(deps.catalog.engine, deps.live_poll_s)
    static = files("cloud.dashboard") / "static"
    app.mount("/ui/static", StaticFiles(directory=str(static)), name="dashboard-static")
    app.include_router(build_signin_router(deps, renderer))
    app.include_router(build_pages_router(deps, renderer, feed))
    app.include_router(build_explore_router(deps, renderer))
    app.include_router(build_events_router(deps, renderer))
    install_handlers(app, renderer)
    app.add_middleware(ServerTiming)
    return feed


@contextlib.asynccontextmanager
async def closing(feed: LiveFeed) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await feed.close()
