"""The alert dispatcher: follows ``analytics_events`` by id and delivers what the rules match.

One step: read up to ``batch`` events after the saved cursor; for each, the rules it matches
whose quiet period is over; deliver each (rule, event) to each of the rule's targets, at most
``concurrency`` at once (webhooks and MQTT retry with backoff; after the last attempt the
alert becomes a row of ``alert_dead_letters``); publish the retained state of the cameras the
events came from; then save the cursor and the quiet periods together.

Delivery is at least once: a crash after a delivery and before the cursor is saved delivers
that alert again at the next start, with the same idempotency key (``<event id>:<rule>``),
which receivers use to drop repeats. Exactly once is not possible over HTTP or MQTT. Run the
dispatcher in one cloud process (``alerts`` configured on one replica).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from cloud.alerts.config import MQTT_TARGET, AlertRule, AlertsConfig, ConfigSecretMissing
from cloud.alerts.delivery import DeliveryFailed, MqttSink, Sink, WebhookSink, encode
from cloud.alerts.metrics import AlertMetrics
from cloud.alerts.model import Camera, StoredEvent, idempotency_key, iso, message, restamped
from cloud.alerts.rules import QuietPeriods, matching
from cloud.alerts.store import AlertStore, DeadLetter, distinct_cameras

logger = logging.getLogger(__name__)

#: The window of the per-class counts in a camera's MQTT state (s).
STATE_WINDOW_S = 3600
DEFAULT_CURSOR = "default"


class AlertsSetupError(Exception):
    """The alerts cannot start as configured (a secret's environment variable is missing)."""


class ReplayRefused(Exception):
    """A dead letter that cannot be replayed: already replayed, or its target is gone."""


@dataclass(frozen=True, slots=True)
class _Job:
    rule: str | None
    target: str
    event: StoredEvent
    payload: dict[str, Any]


def build_sinks(config: AlertsConfig) -> dict[str, Sink]:
    """One sink per configured target, secrets resolved (``AlertsSetupError`` when missing)."""
    sinks: dict[str, Sink] = {}
    try:
        for name, hook in config.webhooks.items():
            sinks[name] = WebhookSink(name, hook, hook.resolve_secret(name))
        if config.mqtt is not None:
            sinks[MQTT_TARGET] = MqttSink(config.mqtt, config.mqtt.resolve_password())
    except ConfigSecretMissing as exc:
        raise AlertsSetupError(str(exc)) from None
    return sinks


class AlertDispatcher:
    def __init__(
        self,
        config: AlertsConfig,
        engine: Engine,
        registry: CollectorRegistry,
        *,
        sinks: Mapping[str, Sink] | None = None,
        clock: Callable[[], float] = time.time,
        cursor_name: str = DEFAULT_CURSOR,
    ) -> None:
        self.config = config
        self.store = AlertStore(engine)
        self.metrics = AlertMetrics(registry)
        self.sinks: dict[str, Sink] = dict(build_sinks(config) if sinks is None else sinks)
        self._clock = clock
        self._cursor_name = cursor_name
        self._cursor: int | None = None
        self._quiet: QuietPeriods | None = None
        self._semaphore = asyncio.Semaphore(config.concurrency)
        mqtt = self.sinks.get(MQTT_TARGET)
        self._mqtt = mqtt if isinstance(mqtt, MqttSink) else None

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    # -- the loop

    async def run(self) -> None:
        """Steps until cancelled; a failing step (database down) is logged and retried."""
        logger.info(
            "alerts: %d rules, targets %s", len(self.config.rules), ", ".join(self.sinks) or "-"
        )
        while True:
            try:
                handled = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("alerts: dispatch step failed; retrying in %.0f s", 5.0)
                await asyncio.sleep(max(self.config.poll_s, 5.0))
                continue
            if handled < self.config.batch:
                await asyncio.sleep(self.config.poll_s)

    async def _start(self) -> int:
        if self._cursor is None:
            cursor = await asyncio.to_thread(self.store.cursor, self._cursor_name)
            if cursor is None:
                cursor = 0
                if self.config.start_at == "end":
                    cursor = await asyncio.to_thread(self.store.newest_event_id)
                await asyncio.to_thread(
                    self.store.advance, self._cursor_name, cursor, {}, self._now_us()
                )
                logger.info("alerts: no saved position; starting after event %d", cursor)
            self._quiet = QuietPeriods(await asyncio.to_thread(self.store.quiet_state))
            self._cursor = cursor
            self.metrics.cursor.set(cursor)
        return self._cursor

    async def step(self) -> int:
        """Dispatch the next batch of events; returns how many events it handled."""
        cursor = await self._start()
        assert self._quiet is not None
        events = await asyncio.to_thread(self.store.events_after, cursor, self.config.batch)
        if not events:
            return 0
        jobs = list(self._jobs(events, self._quiet))
        await asyncio.gather(*(self._deliver(job) for job in jobs))
        if self._mqtt is not None and self._mqtt.config.retain_state:
            await self.publish_states(distinct_cameras(events))
        last = events[-1].id
        await asyncio.to_thread(
            self.store.advance, self._cursor_name, last, self._quiet.take_changes(), self._now_us()
        )
        self._cursor = last
        self.metrics.cursor.set(last)
        return len(events)

    def _jobs(self, events: Iterable[StoredEvent], quiet: QuietPeriods) -> Iterable[_Job]:
        publish_all = self._mqtt is not None and self._mqtt.config.publish_all
        for event in events:
            to_mqtt = False
            for rule in matching(self.config.rules, event):
                if not quiet.admit(rule, event):
                    self.metrics.suppressed.labels(rule.name).inc()
                    continue
                yield from self._rule_jobs(rule, event)
                to_mqtt |= MQTT_TARGET in rule.targets
            if publish_all and not to_mqtt:
                yield _Job(None, MQTT_TARGET, event, message(None, event, self._now_us()))

    def _rule_jobs(self, rule: AlertRule, event: StoredEvent) -> Iterable[_Job]:
        for target in rule.targets:
            yield _Job(rule.name, target, event, message(rule.name, event, self._now_us()))

    async def _deliver(self, job: _Job) -> None:
        sink = self.sinks[job.target]
        key = idempotency_key(job.event.id, job.rule)
        async with self._semaphore:
            try:
                attempts = await sink.deliver(job.payload, key=key)
            except DeliveryFailed as exc:
                self._count_retries(job.target, exc.attempts - 1)
                self.metrics.failed.labels(job.target).inc()
                letter = await asyncio.to_thread(
                    self.store.add_dead_letter,
                    rule=job.rule or "",
                    target=job.target,
                    event_id=job.event.id,
                    payload=job.payload,
                    error=exc.error,
                    attempts=exc.attempts,
                    now_us=self._now_us(),
                )
                logger.error(
                    "alerts: rule %s, event %d: %s failed after %d attempts (%s); dead letter %d",
                    job.rule or "-",
                    job.event.id,
                    job.target,
                    exc.attempts,
                    exc.error,
                    letter,
                )
                return
        self._count_retries(job.target, attempts - 1)
        self.metrics.sent.labels(job.target).inc()

    def _count_retries(self, target: str, retries: int) -> None:
        if retries > 0:
            self.metrics.retries.labels(target).inc(retries)

    # -- the retained state of cameras (MQTT)

    def camera_state(self, camera: Camera) -> dict[str, Any]:
        """``{camera, updated_at, window_s, since, counts: {kind: {class: n}}, newest_incident}``
        (blocking: reads the database)."""
        now = self._now_us()
        since = now - STATE_WINDOW_S * 1_000_000
        incident = self.store.newest_incident(camera)
        return {
            "camera": camera.as_json(),
            "updated_at": iso(now),
            "window_s": STATE_WINDOW_S,
            "since": iso(since),
            "counts": self.store.camera_counts(camera.id, since),
            "newest_incident": None if incident is None else incident.as_json(),
        }

    async def publish_states(self, cameras: Iterable[Camera]) -> None:
        assert self._mqtt is not None
        for camera in cameras:
            state = await asyncio.to_thread(self.camera_state, camera)
            topic = self._mqtt.topic(state["camera"], "state")
            try:
                await self._mqtt.publish(topic, encode(state), qos=1, retain=True)
            except DeliveryFailed as exc:
                self.metrics.state_failed.inc()
                logger.warning("alerts: state of camera %s not published: %s", camera.path, exc)

    # -- dead letters

    async def replay(self, letter_id: int, attempts: int = 1) -> DeadLetter | None:
        """Deliver a dead letter again (``attempts`` tries, one by default); None: no such
        letter. Raises :class:`ReplayRefused`, or :class:`DeliveryFailed` after recording the
        failed attempt on the letter."""
        letter = await asyncio.to_thread(self.store.dead_letter, letter_id)
        if letter is None:
            return None
        if letter.replayed_us is not None:
            raise ReplayRefused(
                f"dead letter {letter_id} was replayed at {iso(letter.replayed_us)}"
            )
        sink = self.sinks.get(letter.target)
        if sink is None:
            raise ReplayRefused(
                f"dead letter {letter_id}: target {letter.target!r} is no longer configured"
            )
        payload = restamped(letter.payload, self._now_us())
        key = idempotency_key(letter.event_id, letter.rule or None)
        try:
            await sink.deliver(payload, key=key, attempts=attempts)
        except DeliveryFailed as exc:
            self.metrics.replayed.labels(letter.target, "failed").inc()
            await asyncio.to_thread(self.store.record_replay, letter_id, self._now_us(), exc.error)
            raise
        self.metrics.replayed.labels(letter.target, "delivered").inc()
        self.metrics.sent.labels(letter.target).inc()
        return await asyncio.to_thread(self.store.record_replay, letter_id, self._now_us(), None)

    async def aclose(self) -> None:
        for sink in self.sinks.values():
            await sink.aclose()
