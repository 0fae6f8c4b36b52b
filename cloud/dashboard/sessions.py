"""Dashboard sessions in the database: created at sign-in, checked per request, ended at sign-out.

The cookie holds a random 256-bit session id; the table keeps only its SHA-256, the API client
that signed in, a CSRF token and the expiry. A session lives ``ttl_s`` from its creation
(sign in again after that); expired rows are purged as new sessions are made. Keeping sessions
in the database (not in a signed cookie) means sign-out really ends a session, on every
replica that shares the database.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from cloud.schema import ui_sessions


def _now_us() -> int:
    return time.time_ns() // 1_000


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


@dataclass(frozen=True)
class UiSession:
    """A signed-in browser: who (the API client's name) and its CSRF token."""

    client: str
    csrf: str
    expires_us: int


class UiSessions:
    def __init__(
        self, engine: Engine, ttl_s: float = 12 * 3600.0, clock: Callable[[], int] = _now_us
    ) -> None:
        self.engine = engine
        self.ttl_us = int(ttl_s * 1_000_000)
        self.clock = clock

    def create(self, client: str) -> tuple[str, UiSession]:
        """A new session for ``client``: its id (for the cookie only) and the session."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = UiSession(client, secrets.token_urlsafe(32), now + self.ttl_us)
        with self.engine.begin() as conn:
            conn.execute(delete(ui_sessions).where(ui_sessions.c.expires_us <= now))
            conn.execute(
                insert(ui_sessions).values(
                    id_sha256=_digest(session_id),
                    client=client,
                    csrf=session.csrf,
                    created_us=now,
                    expires_us=session.expires_us,
                )
            )
        return session_id, session

    def lookup(self, session_id: str | None) -> UiSession | None:
        """The live session of a cookie's id; None when absent, unknown, ended or expired."""
        if not session_id or len(session_id) > 100:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ui_sessions.c.client, ui_sessions.c.csrf, ui_sessions.c.expires_us).where(
                    ui_sessions.c.id_sha256 == _digest(session_id)
                )
            ).first()
        if row is None or row.expires_us <= self.clock():
            return None
        return UiSession(row.client, row.csrf, row.expires_us)

    def end(self, session_id: str | None) -> bool:
        """Sign-out: the session is gone for every later request; whether one was ended."""
        if not session_id or len(session_id) > 100:
            return False
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(ui_sessions).where(ui_sessions.c.id_sha256 == _digest(session_id))
            )
        return bool(result.rowcount)
