"""Bearer tokens of the query API, checked in constant time.

Like the edges' tokens (:mod:`cloud.auth`), a client's token is hashed with SHA-256 and the
digest compared with :func:`hmac.compare_digest`; here no client name is presented, so the
digest is compared with *every* configured digest (no early exit), and the time taken says
nothing about which token, if any, matched. Missing or malformed credentials are 401 with
``WWW-Authenticate``, an unknown token 403. No configured token means no client can query.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter

from cloud.api.errors import Forbidden, Unauthorized

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token from the cloud config's `api_tokens` (`semcom cloud token`).",
)
"""Declares the scheme in OpenAPI; the header itself is parsed below, to tell 401 from 403."""


def client_of(digests: Mapping[str, bytes], authorization: str | None) -> str:
    """The name of the client whose token ``authorization`` carries, else raise."""
    if not authorization:
        raise Unauthorized("missing Authorization header: send 'Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    found = match_token(digests, token)
    if found is None:
        raise Forbidden("unknown API token")
    return found


def match_token(digests: Mapping[str, bytes], token: str) -> str | None:
    """The client whose token this is, or None; compares with every digest (no early exit)."""
    presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
    found = None
    for name, digest in digests.items():
        if hmac.compare_digest(presented, digest) and found is None:
            found = name
    return found


def bearer_dependency(
    digests: Mapping[str, bytes], registry: CollectorRegistry
) -> Callable[[Request, HTTPAuthorizationCredentials | None], str]:
    """A FastAPI dependency that returns the client's name or raises 401/403."""
    failures = Counter(
        "semcom_api_auth_failures", "Refused API requests by status.", ["status"], registry=registry
    )
    frozen = dict(digests)

    def require_token(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> str:
        try:
            return client_of(frozen, request.headers.get("authorization"))
        except (Unauthorized, Forbidden) as exc:
            failures.labels(str(exc.status)).inc()
            raise

    return require_token
