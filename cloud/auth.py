"""Edge authentication for signaling: bearer tokens, compared in constant time.

The token is hashed (SHA-256) and the digest compared with :func:`hmac.compare_digest`; an
unknown edge id is compared against a dummy digest, so a response's timing says nothing about
which edge ids exist. Missing or malformed credentials are 401, a wrong token or unknown edge
403, with the same body for both 403 cases.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from cloud.api.errors import echo

_DUMMY = hashlib.sha256(b"semcom: no such edge").digest()


class AuthFailure(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.reason = reason  # metrics label: missing / malformed / rejected
        self.detail = detail
        super().__init__(detail)


def authenticate(digests: Mapping[str, bytes], edge_id: str, authorization: str | None) -> None:
    """Raise :class:`AuthFailure` unless ``authorization`` is ``Bearer <token of edge_id>``."""
    if not authorization:
        raise AuthFailure(401, "missing", "missing Authorization header: send 'Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthFailure(401, "malformed", "the Authorization header must be 'Bearer <token>'")
    presented = hashlib.sha256(token.strip().encode()).digest()
    expected = digests.get(edge_id, _DUMMY)
    if not hmac.compare_digest(presented, expected) or edge_id not in digests:
        raise AuthFailure(403, "rejected", f"edge {echo(edge_id)} is unknown or its token is wrong")
