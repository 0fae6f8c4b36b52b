"""Sign-in and sign-out: an API token in a POST form becomes an HttpOnly session cookie.

The token travels only in the form's body (never in a URL, so never in an access log or the
browser history) and is not kept: the session row names the API client it matched. The
sign-in form carries a random value that must match a short-lived cookie (login CSRF: another
site cannot sign a browser in under its own token).
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from starlette.requests import Request

from cloud.api.auth import match_token
from cloud.dashboard.deps import DashboardDeps
from cloud.dashboard.guard import (
    COOKIE,
    CSRF_FIELD,
    MAX_FORM_BYTES,
    SIGNIN_COOKIE,
    check_csrf,
    safe_next,
    session_of,
    tokens_equal,
)
from cloud.dashboard.web import Renderer

logger = logging.getLogger(__name__)


def build_signin_router(deps: DashboardDeps, renderer: Renderer) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    secure = deps.secure_cookies

    def form_page(request: Request, next_path: str, error: str | None, status: int) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = renderer.page(
            request,
            "signin.html",
            {
                "title": "Sign in",
                "next": next_path,
                "nonce": nonce,
                "error": error,
                "session": None,
                "no_clients": not deps.token_digests,
            },
            status,
        )
        response.set_cookie(
            SIGNIN_COOKIE, nonce, max_age=1800, httponly=True, samesite="strict", secure=secure
        )
        return response

    @router.get("/signin")
    async def signin_form(request: Request, next: str | None = None) -> Response:
        target = safe_next(next)
        if await asyncio.to_thread(session_of, request, deps.sessions) is not None:
            return RedirectResponse(target, status_code=303)
        return form_page(request, target, None, 200)

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10, max_part_size=MAX_FORM_BYTES)
        target = safe_next(str(form.get("next") or "/"))
        nonce = form.get(CSRF_FIELD)
        if not tokens_equal(
            nonce if isinstance(nonce, str) else None, request.cookies.get(SIGNIN_COOKIE, "")
        ):
            return form_page(
                request, target, "The sign-in form expired: enter the token again.", 403
            )
        token = str(form.get("token") or "").strip()
        client = match_token(deps.token_digests, token) if token else None
        if client is None:
            logger.warning("dashboard sign-in refused: unknown API token")
            return form_page(request, target, "Unknown API token.", 401)
        session_id, _session = await asyncio.to_thread(deps.sessions.create, client)
        logger.info("dashboard: client %s signed in", client)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=deps.sessions.ttl_us // 1_000_000,
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
        )
        response.delete_cookie(SIGNIN_COOKIE)
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        session = await asyncio.to_thread(session_of, request, deps.sessions)
        if session is not None:
            form = await request.form(max_files=0, max_fields=10, max_part_size=MAX_FORM_BYTES)
            check_csrf(request, session, form)
            await asyncio.to_thread(deps.sessions.end, request.cookies.get(COOKIE))
            logger.info("dashboard: client %s signed out", session.client)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure)
        return response

    return router
