"""The API's own description: ``/openapi.json`` and the Swagger page ``/docs``.

FastAPI serves both without authentication by default; here the schema needs the bearer token
like every other route unless the operator makes the documentation public (``docs_public``).
The Swagger page exists only then: a browser cannot send a bearer token when it loads the
schema, so a page behind the token would be an empty shell. The app is built with FastAPI's
own ``openapi_url``, ``docs_url`` and ``redoc_url`` set to None; see :data:`APP_DOCS_OFF`.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

#: Keyword arguments for ``FastAPI(...)`` that switch off its unauthenticated documentation.
APP_DOCS_OFF: Final[dict[str, Any]] = {"openapi_url": None, "docs_url": None, "redoc_url": None}

SCHEMA_PATH: Final = "/openapi.json"


def add_docs_routes(router: APIRouter, *, swagger_page: bool) -> None:
    """Serve the schema on ``router`` (public or token-protected), and ``/docs`` if asked."""

    @router.get(SCHEMA_PATH, include_in_schema=False)
    async def openapi_schema(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    if swagger_page:

        @router.get("/docs", include_in_schema=False)
        async def swagger(request: Request) -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url=SCHEMA_PATH, title=f"{request.app.title} - API documentation"
            )
