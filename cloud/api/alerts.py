"""``GET /v1/alerts/dead-letters`` and ``POST /v1/alerts/dead-letters/{id}/replay``.

Dead letters are alerts whose delivery failed after the target's last attempt (see
:mod:`cloud.alerts`); a replay sends the stored message once more (one attempt, a new
``sent_at`` and signature, the same idempotency key) and marks the row replayed when the
target accepts it. Token-protected like the rest of the API (mounted through
``ApiDeps.extra_routes`` when ``alerts`` is configured).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from cloud.alerts.delivery import DeliveryFailed
from cloud.alerts.dispatcher import ReplayRefused
from cloud.alerts.store import AlertStore, DeadLetter
from cloud.api.errors import ApiError, Conflict, NotFound
from cloud.api.params import to_datetime
from cloud.api.schemas import ErrorResponse

Replay = Callable[[int], Awaitable[DeadLetter | None]]
"""Deliver a dead letter again (:meth:`cloud.alerts.dispatcher.AlertDispatcher.replay`)."""

LetterId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The dead letter's id.")]


class DeliveryFailedAgain(ApiError):
    """502: the target refused the replayed alert or did not answer (the row says why)."""

    status = 502
    code = "delivery_failed"


class DeadLetterOut(BaseModel):
    """An alert that could not be delivered."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 12,
                    "rule": "speeding",
                    "target": "ops",
                    "event_id": 4711,
                    "payload": {
                        "rule": "speeding",
                        "event": {"id": 4711, "kind": "speed", "value": 92.5, "unit": "km/h"},
                        "camera": {"id": 3, "edge_id": "edge-01", "name": "north"},
                        "sent_at": "2026-11-24T10:00:00.120000Z",
                    },
                    "error": "HTTP 503: upstream unavailable",
                    "attempts": 5,
                    "created": "2026-11-24T10:00:31.500000Z",
                    "last_attempt": "2026-11-24T10:00:31.500000Z",
                    "replayed": None,
                }
            ]
        },
    )

    id: int = Field(description="The dead letter's id.")
    rule: str | None = Field(
        description="The rule that raised the alert (null: an MQTT publish_all event)."
    )
    target: str = Field(description="The webhook's name, or mqtt.")
    event_id: int = Field(description="The analytics event (analytics_events.id).")
    payload: dict[str, Any] = Field(
        description="The message as it was sent: {rule, event, camera, sent_at}."
    )
    error: str = Field(description="Why the last attempt failed.")
    attempts: int = Field(description="Attempts made, replays included.")
    created: datetime = Field(description="When the alert became a dead letter.")
    last_attempt: datetime = Field(description="When it was last tried.")
    replayed: datetime | None = Field(description="When a replay delivered it; null: not yet.")

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterOut:
        return cls(
            id=letter.id,
            rule=letter.rule or None,
            target=letter.target,
            event_id=letter.event_id,
            payload=letter.payload,
            error=letter.error,
            attempts=letter.attempts,
            created=to_datetime(letter.created_us),
            last_attempt=to_datetime(letter.last_attempt_us),
            replayed=None if letter.replayed_us is None else to_datetime(letter.replayed_us),
        )


class DeadLetterPage(BaseModel):
    """Dead letters, newest first."""

    model_config = ConfigDict(frozen=True)

    dead_letters: list[DeadLetterOut]
    next_before: int | None = Field(
        description="Pass as `before` for the next (older) page; null: this is the last."
    )


_REPLAY_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such dead letter."},
    409: {
        "model": ErrorResponse,
        "description": "Already replayed, or its target is no longer configured.",
    },
    502: {
        "model": ErrorResponse,
        "description": "The target failed again; the row records the attempt and the error.",
    },
}


def build_alerts_router(
    store: AlertStore, replay: Replay, route_class: type[APIRoute] = APIRoute
) -> APIRouter:
    """The dead-letter routes; the API's token check applies where they are mounted."""
    router = APIRouter(route_class=route_class)

    @router.get("/v1/alerts/dead-letters", response_model=DeadLetterPage, tags=["alerts"])
    async def dead_letters(
        pending: Annotated[bool, Query(description="Only those not replayed yet.")] = False,
        before: Annotated[
            int | None,
            Query(ge=1, le=2**63 - 1, description="Only ids below this (the next page)."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    ) -> DeadLetterPage:
        """Alerts whose delivery failed after the target's last attempt, newest first."""
        rows = await asyncio.to_thread(
            store.dead_letters, pending_only=pending, before_id=before, limit=limit
        )
        return DeadLetterPage(
            dead_letters=[DeadLetterOut.of(row) for row in rows],
            next_before=rows[-1].id if len(rows) == limit else None,
        )

    @router.post(
        "/v1/alerts/dead-letters/{letter_id}/replay",
        response_model=DeadLetterOut,
        responses=_REPLAY_ERRORS,
        tags=["alerts"],
    )
    async def replay_dead_letter(letter_id: LetterId) -> DeadLetterOut:
        """Send the alert to its target again (one attempt, same idempotency key); the row
        is marked replayed when the target accepts it."""
        try:
            letter = await replay(letter_id)
        except ReplayRefused as exc:
            raise Conflict(str(exc)) from None
        except DeliveryFailed as exc:
            raise DeliveryFailedAgain(
                f"dead letter {letter_id}: delivery failed again: {exc.error}"
            ) from None
        if letter is None:
            raise NotFound(f"no dead letter {letter_id}")
        return DeadLetterOut.of(letter)

    return router
