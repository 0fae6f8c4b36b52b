"""Which rules an event matches, and the quiet periods that hold repeats back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cloud.alerts.config import DURATION_KINDS, AlertRule
from cloud.alerts.model import StoredEvent
from cloud.alerts.store import QuietKey
from cloud.analytics.store import SETTLED_SPEED

_SECONDS_PER = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def duration_s(event: StoredEvent) -> float | None:
    """The event's value as seconds, when it is a duration (``unit`` s, ms or us)."""
    if event.value is None or event.unit not in _SECONDS_PER:
        return None
    return event.value * _SECONDS_PER[event.unit]


def camera_matches(rule: AlertRule, event: StoredEvent) -> bool:
    if not rule.cameras:
        return True
    cam = event.camera
    return any(
        ref == cam.id if isinstance(ref, int) else ref in (cam.name, cam.path)
        for ref in rule.cameras
    )


def matches(rule: AlertRule, event: StoredEvent) -> bool:
    """Every filter of ``rule`` holds for ``event`` (an empty filter holds for every event).

    A speed matches only once settled (its track ended: ordinal ``SETTLED_SPEED``, inserted
    once per track by the analytics runner): the provisional speed of a track in progress is
    measured on its first seconds and would both alert falsely and miss a vehicle whose
    speed over its whole track crosses the threshold later."""
    if event.kind not in rule.kinds or not camera_matches(rule, event):
        return False
    if event.kind == "speed" and event.ordinal != SETTLED_SPEED:
        return False
    if rule.subjects and event.subject not in rule.subjects:
        return False
    if rule.classes and event.class_id not in rule.classes:
        return False
    if rule.directions and event.kind == "line_crossing" and event.direction not in rule.directions:
        return False
    if rule.levels and event.kind == "congestion" and event.direction not in rule.levels:
        return False
    if rule.speed_above is not None and event.kind == "speed":
        if event.unit != rule.speed_unit or event.value is None:
            return False
        if not event.value > rule.speed_above:
            return False
    if rule.dwell_above_s is not None and event.kind in DURATION_KINDS:
        seconds = duration_s(event)
        if seconds is None or not seconds > rule.dwell_above_s:
            return False
    return True


class QuietPeriods:
    """The last alert's event time per (rule, camera, subject): a matching event within the
    rule's ``quiet_s`` of it (either side, by event time) raises no alert."""

    def __init__(self, last: Mapping[QuietKey, int] | None = None) -> None:
        self.last: dict[QuietKey, int] = dict(last or {})
        self.changed: dict[QuietKey, int] = {}

    def admit(self, rule: AlertRule, event: StoredEvent) -> bool:
        """Whether ``event`` may alert for ``rule``; if so it starts a new quiet period."""
        if rule.quiet_s <= 0:
            return True
        key = (rule.name, event.camera.id, event.subject)
        last = self.last.get(key)
        if last is not None and abs(event.at_us - last) < rule.quiet_s * 1e6:
            return False
        newest = event.at_us if last is None else max(last, event.at_us)
        self.last[key] = self.changed[key] = newest
        return True

    def take_changes(self) -> dict[QuietKey, int]:
        changed, self.changed = self.changed, {}
        return changed


def matching(rules: Sequence[AlertRule], event: StoredEvent) -> list[AlertRule]:
    return [rule for rule in rules if matches(rule, event)]
