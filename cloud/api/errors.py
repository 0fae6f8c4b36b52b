"""The query API's errors and the handlers that turn every failure into one JSON shape.

Every error response is ``{"error": {"code": "...", "message": "...", "details": [...]}}``
(``details`` only for validation errors: one entry per bad parameter). The tree, mapped at the
boundary so that handlers and services raise only these:

- :class:`ApiError` (status, code, message)
    - :class:`Unauthorized` 401, with ``WWW-Authenticate: Bearer``: no or malformed credentials
    - :class:`Forbidden` 403: a token this service does not know
    - :class:`NotFound` 404: no such detection, track or embedding space
    - :class:`Conflict` 409: the request is fine but this service cannot serve it as
      configured (no query encoder, a codebook that is not loaded)
    - :class:`InvalidParameter` 422: a parameter that parses but makes no sense (a foreign
      cursor, ``from`` after ``to``, an image that does not decode)
    - :class:`Unavailable` 503, with ``Retry-After``: a part (index backend) is down

Framework errors keep their status: request validation is 422 naming the parameter, unknown
routes 404, wrong methods 405. A database that does not answer is 503. Anything else is a bug:
500 with a generic message, logged with its traceback (the tests show none happens).

No error body echoes unbounded input: messages are cut to ``MAX_MESSAGE_CHARS``, the location
and message of each validation detail to ``MAX_ECHO_CHARS`` (an extra JSON key or a custom
validator's message may carry what the client sent), and pydantic's ``input`` is never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

logger = logging.getLogger(__name__)

_UNAVAILABLE = (OperationalError, DisconnectionError, PoolTimeout)

#: Longest piece of client input echoed in an error body or log line, in characters.
MAX_ECHO_CHARS: Final = 80
#: Longest message of an error body, in characters.
MAX_MESSAGE_CHARS: Final = 1_000


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def echo(value: str, limit: int = MAX_ECHO_CHARS) -> str:
    """The ``repr`` of client input for a message, cut to ``limit`` characters of it."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def headers(self) -> dict[str, str] | None:
        return None


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    @property
    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": 'Bearer realm="semcom"'}


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class InvalidParameter(ApiError):
    """A parameter that validates as a type but not as a value; the message names it."""

    status = 422
    code = "invalid_parameter"

    def __init__(self, parameter: str, problem: str, *, code: str | None = None) -> None:
        super().__init__(f"{parameter}: {problem}", code=code)
        self.parameter = parameter


class Unavailable(ApiError):
    status = 503
    code = "unavailable"

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": "5"}


def error_body(code: str, message: str, details: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": clip(message)}
    if details:
        error["details"] = list(details)
    return {"error": error}


def status_of(exc: BaseException) -> int:
    """The status a handler below answers ``exc`` with (for request metrics)."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, RequestValidationError):
        return 422
    if isinstance(exc, _UNAVAILABLE):
        return 503
    return 500


def _where(loc: Sequence[int | str]) -> str:
    """``("body", "filter", "camera", 0)`` -> ``body.filter.camera[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "request"


_MAX_DETAILS: Final = 20  # validation details in one body (a long list body can fail often)


def _validation_details(exc: RequestValidationError) -> list[dict[str, str]]:
    details = []
    for err in exc.errors()[:_MAX_DETAILS]:
        loc = err.get("loc", ())
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        where = _where(tuple(clip(p, MAX_ECHO_CHARS) if isinstance(p, str) else p for p in loc))
        details.append({"location": clip(where, 4 * MAX_ECHO_CHARS), "message": clip(msg, 200)})
    return details


async def _validation(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    message = "; ".join(f"{d['location']}: {d['message']}" for d in details) or "invalid request"
    return JSONResponse(error_body("invalid_parameter", message, details), status_code=422)


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers
    )


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code < 200 or exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "error"
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) else phrase
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


async def _unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    body = error_body("unavailable", "the database is not answering; retry later")
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


async def _internal(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal", "internal server error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Give every error of ``app`` the JSON shape above (call once, on the app)."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    for exc_type in _UNAVAILABLE:
        app.add_exception_handler(exc_type, _unavailable)
    app.add_exception_handler(Exception, _internal)
