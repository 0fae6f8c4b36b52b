"""Webhook signatures: HMAC-SHA256 over the timestamp and the raw body.

A webhook request carries::

    X-Semcom-Timestamp: 1764000000            (Unix seconds when it was sent)
    X-Semcom-Signature: sha256=<hex>          (HMAC-SHA256, key = the webhook's secret)

and the signed message is the ASCII timestamp, a full stop, and the raw request body, byte for
byte: ``f"{timestamp}.".encode() + body``. A receiver recomputes the HMAC over the body it read
(before parsing it), compares in constant time, and refuses timestamps more than a few minutes
from its clock, so a captured request cannot be replayed later. :func:`verify` does exactly
that and may be copied into a receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

SIGNATURE_HEADER: Final = "X-Semcom-Signature"
TIMESTAMP_HEADER: Final = "X-Semcom-Timestamp"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
#: Default tolerance of :func:`verify` between the timestamp and the receiver's clock (s).
TOLERANCE_S: Final = 300


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Semcom-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    timestamp: str | None,
    header: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Whether ``header`` signs ``body`` at ``timestamp`` with ``secret``, and ``timestamp``
    is within ``tolerance_s`` of ``now`` (default: the clock)."""
    if not timestamp or not header or not timestamp.isdigit():
        return False
    sent = int(timestamp)
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, sent, body), header.strip())
