"""What an alert is made of: a stored analytics event, its camera, and the message sent.

The message is the same for every target: ``{"rule", "event", "camera", "sent_at"}`` (JSON;
``rule`` is null for an event published to MQTT by ``publish_all`` that no rule matched).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cloud.describe.schema import class_name

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Kinds that are incidents (the newest is part of a camera's MQTT state).
INCIDENT_KINDS = ("stopped_vehicle", "wrong_way")


def iso(us: int) -> str:
    """Microseconds since the epoch -> ISO 8601 UTC (``2026-11-24T10:00:00.120000Z``)."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Camera:
    id: int
    edge_id: str
    name: str

    @property
    def path(self) -> str:
        """``edge/name``: how rules and MQTT topics name the camera."""
        return f"{self.edge_id}/{self.name}"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "edge_id": self.edge_id, "name": self.name}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of ``analytics_events`` with its camera."""

    id: int
    camera: Camera
    track_id: Any
    kind: str
    subject: str
    ordinal: int
    at_us: int
    class_id: int | None
    direction: str | None
    value: float | None
    unit: str | None
    scene_version: str
    created_us: int
    details: Any

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "ordinal": self.ordinal,
            "at": iso(self.at_us),
            "at_us": self.at_us,
            "track_id": self.track_id,
            "class_id": self.class_id,
            "class": None if self.class_id is None else class_name(self.class_id),
            "direction": self.direction,
            "value": self.value,
            "unit": self.unit,
            "scene_version": self.scene_version,
            "details": self.details,
        }


def message(rule: str | None, event: StoredEvent, sent_at_us: int) -> dict[str, Any]:
    """The alert's JSON body."""
    return {
        "rule": rule,
        "event": event.as_json(),
        "camera": event.camera.as_json(),
        "sent_at": iso(sent_at_us),
    }


def restamped(payload: Mapping[str, Any], sent_at_us: int) -> dict[str, Any]:
    """A stored message (a dead letter's) with a new ``sent_at``."""
    return {**payload, "sent_at": iso(sent_at_us)}


def idempotency_key(event_id: int, rule: str | None) -> str:
    """``<event id>:<rule>``: the same for every attempt and replay of one alert."""
    return f"{event_id}:{rule or ''}"
