"""Rendering: the Jinja2 environment, page responses with their security headers, and the
handlers that turn :class:`SignInRequired` and :class:`CsrfRefused` into responses.

Every page is sent with a Content-Security-Policy that allows only this origin (no inline
script, no third-party host), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``.
:class:`ServerTiming` adds a ``Server-Timing: app;dur=<ms>`` header to every response, which
the browser exposes to scripts (``PerformanceResourceTiming.serverTiming``): what
``semcom bench dashboard`` reads.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Final
from urllib.parse import quote, urlencode

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.dashboard.guard import CsrfRefused, SignInRequired
from cloud.describe.schema import COCO_NAMES

CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def class_name(class_id: int | None) -> str:
    if class_id is None:
        return "unknown"
    return COCO_NAMES[class_id] if 0 <= class_id < len(COCO_NAMES) else f"class {class_id}"


def fmt_time(value: datetime | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1e6, timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - the loop returns


def fmt_age(us: int | None, now_us: int | None = None) -> str:
    if us is None:
        return "never"
    seconds = max(0.0, ((now_us or time.time_ns() // 1000) - us) / 1e6)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def url_with(base: str, params: dict[str, Any]) -> str:
    """``base`` with the query ``params`` (lists repeat the key; None and "" left out)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(key, str(v)) for v in values if v is not None and v != ""]
    return base + ("?" + urlencode(pairs) if pairs else "")


def build_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cloud.dashboard", "templates"),
        autoescape=select_autoescape(["html", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        class_name=class_name, time=fmt_time, bytes=fmt_bytes, age=fmt_age, urlquote=quote
    )
    env.globals.update(url_with=url_with)
    return env


class Renderer:
    def __init__(self) -> None:
        self.env = build_environment()

    def page(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        body = self.env.get_template(template).render(
            request=request, path=request.url.path, **context
        )
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def install_handlers(app: FastAPI, renderer: Renderer) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        if not exc.page:
            return JSONResponse(
                {"error": {"code": "unauthorized", "message": "sign in to the dashboard"}},
                status_code=401,
            )
        return RedirectResponse(url_with("/signin", {"next": exc.next_path}), status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return renderer.page(
            request, "error.html", {"title": "Refused", "message": str(exc), "session": None}, 403
        )


class ServerTiming:
    """ASGI middleware: ``Server-Timing: app;dur=<ms to the response's start>``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={ms:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)
