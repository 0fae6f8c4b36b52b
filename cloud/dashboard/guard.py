"""Who may see a page, and which requests may change state: the session cookie and CSRF checks.

- :func:`session_of` finds the request's live session from its cookie; pages that need one
  raise :class:`SignInRequired` (a 303 to ``/signin?next=...``; data routes answer 401).
- :func:`check_csrf` compares the session's CSRF token with the form field ``csrf`` or the
  header ``X-CSRF-Token`` of a state-changing request, in constant time; a missing or wrong
  token raises :class:`CsrfRefused` (403). Cookies are SameSite=Strict as well, but the token
  does not rely on the browser honouring that.
- :func:`safe_next` keeps a sign-in's redirect on this site (a path, never ``//host``).
"""

from __future__ import annotations

import hmac
from typing import Final

from starlette.datastructures import FormData
from starlette.requests import Request

from cloud.dashboard.sessions import UiSession, UiSessions

COOKIE: Final = "semcom_session"
SIGNIN_COOKIE: Final = "semcom_signin"
"""Before sign-in: a random value the sign-in form must echo (login CSRF, double submit)."""
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"
MAX_FORM_BYTES: Final = 64 * 1024
"""Largest non-file form field accepted (files have their own limit)."""


class SignInRequired(Exception):
    """No live session: pages redirect to sign-in, data routes answer 401."""

    def __init__(self, next_path: str, page: bool = True) -> None:
        self.next_path = next_path
        self.page = page
        super().__init__("sign in first")


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token."""


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this site, else ``/``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if len(value) > 2000 or any(ord(c) < 0x20 for c in value):
        return "/"
    return value


def current_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def session_of(request: Request, sessions: UiSessions) -> UiSession | None:
    return sessions.lookup(request.cookies.get(COOKIE))


def require_session(request: Request, sessions: UiSessions, page: bool = True) -> UiSession:
    session = session_of(request, sessions)
    if session is None:
        raise SignInRequired(current_path(request), page)
    return session


def tokens_equal(presented: str | None, expected: str) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def check_csrf(request: Request, session: UiSession, form: FormData | None) -> None:
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and form is not None:
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not tokens_equal(presented, session.csrf):
        raise CsrfRefused("this request needs the page's CSRF token: reload the page and retry")
