"""Webhook delivery against a real HTTP receiver on 127.0.0.1: signatures, retries with
backoff, dead letters and their replay, the cursor."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cloud.alerts.config import AlertsConfig
from cloud.alerts.delivery import DeliveryFailed
from cloud.alerts.dispatcher import AlertDispatcher, AlertsSetupError, ReplayRefused
from cloud.alerts.signing import signature, verify
from tests.alerts.conftest import Catalog, Receiver, free_port


def config(receiver_url: str, secret: str = "receiver-secret", **hook: Any) -> AlertsConfig:
    return AlertsConfig.model_validate(
        {
            "start_at": "beginning",
            "rules": [{"name": "crossings", "kinds": "line_crossing", "targets": ["ops"]}],
            "webhooks": {
                "ops": {
                    "url": receiver_url,
                    "secret": secret,
                    "max_attempts": 3,
                    "backoff_s": 0.01,
                    "backoff_max_s": 0.05,
                    **hook,
                }
            },
        }
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_signed_post_that_the_receiver_verifies(catalog: Catalog, receiver: Receiver) -> None:
    event = catalog.add_event(subject="stop-line", direction="in", class_id=2)
    dispatcher = AlertDispatcher(config(receiver.url), catalog.engine, CollectorRegistry())

    async def main() -> int:
        try:
            return await dispatcher.step()
        finally:
            await dispatcher.aclose()

    assert asyncio.run(main()) == 1
    [got] = receiver.received
    assert got.signed
    assert got.status == 200
    body = got.body
    assert body["rule"] == "crossings"
    assert body["camera"] == {
        "id": catalog.cameras["edge-01/north"],
        "edge_id": "edge-01",
        "name": "north",
    }
    assert body["event"]["id"] == event
    assert (body["event"]["kind"], body["event"]["subject"]) == ("line_crossing", "stop-line")
    assert (body["event"]["class"], body["event"]["direction"]) == ("car", "in")
    assert body["event"]["at"] == "2025-11-24T16:00:00Z"
    assert body["sent_at"].endswith("Z")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["idempotency-key"] == f"{event}:crossings"
    # the documented scheme, recomputed by hand: HMAC-SHA256("<timestamp>." + raw body)
    stamp = got.headers["x-semcom-timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    mac = hmac.new(b"receiver-secret", stamp.encode() + b"." + got.raw, hashlib.sha256)
    assert got.headers["x-semcom-signature"] == f"sha256={mac.hexdigest()}"
    # what the receiver refuses: another body, an old timestamp, another secret
    assert not verify(b"receiver-secret", stamp, got.headers["x-semcom-signature"], got.raw + b" ")
    old = str(int(stamp) - 3600)
    assert not verify(
        b"receiver-secret", old, signature(b"receiver-secret", int(old), got.raw), got.raw
    )
    assert not verify(b"other", stamp, got.headers["x-semcom-signature"], got.raw)


def test_a_wrong_secret_is_refused_and_not_retried(catalog: Catalog, receiver: Receiver) -> None:
    """401 is final: one attempt, then a dead letter saying why."""
    event = catalog.add_event()
    registry = CollectorRegistry()
    dispatcher = AlertDispatcher(config(receiver.url, secret="wrong"), catalog.engine, registry)

    async def main() -> None:
        await dispatcher.step()
        await dispatcher.aclose()

    asyncio.run(main())
    assert [(r.signed, r.status) for r in receiver.received] == [(False, 401)]
    [letter] = dispatcher.store.dead_letters()
    assert (letter.rule, letter.target, letter.event_id) == ("crossings", "ops", event)
    assert (letter.attempts, letter.error, letter.replayed_us) == (1, "HTTP 401", None)
    assert sample(registry, "semcom_alerts_failed_total", target="ops") == 1
    assert sample(registry, "semcom_alerts_sent_total", target="ops") == 0
    assert sample(registry, "semcom_alerts_cursor") == event


def test_retries_then_a_dead_letter_then_a_replay(catalog: Catalog, receiver: Receiver) -> None:
    """500 on every attempt: max_attempts requests, one dead letter; after the receiver
    recovers, a replay delivers the same alert (same idempotency key) and marks the row."""
    event = catalog.add_event()
    receiver.statuses = [500, 500, 500]
    registry = CollectorRegistry()
    dispatcher = AlertDispatcher(config(receiver.url), catalog.engine, registry)

    async def main() -> None:
        await dispatcher.step()
        [letter] = dispatcher.store.dead_letters()
        assert (letter.attempts, letter.error, letter.target) == (3, "HTTP 500", "ops")
        assert [r.status for r in receiver.received] == [500, 500, 500]
        assert all(r.signed for r in receiver.received)
        # the receiver works again
        replayed = await dispatcher.replay(letter.id)
        assert replayed is not None
        assert replayed.replayed_us is not None
        assert replayed.attempts == 4
        with pytest.raises(ReplayRefused, match="was replayed at"):
            await dispatcher.replay(letter.id)
        assert await dispatcher.replay(letter.id + 100) is None
        await dispatcher.aclose()

    asyncio.run(main())
    first, *_, last = receiver.received
    assert last.status == 200
    assert last.signed
    assert (
        last.headers["idempotency-key"] == first.headers["idempotency-key"] == f"{event}:crossings"
    )
    assert last.body["event"] == first.body["event"]
    assert dispatcher.store.dead_letters(pending_only=True) == []
    assert sample(registry, "semcom_alerts_failed_total", target="ops") == 1
    assert sample(registry, "semcom_alert_retries_total", target="ops") == 2
    assert sample(registry, "semcom_alert_replays_total", target="ops", outcome="delivered") == 1
    assert sample(registry, "semcom_alerts_sent_total", target="ops") == 1


def test_5xx_and_429_are_retried_until_delivered(catalog: Catalog, receiver: Receiver) -> None:
    catalog.add_event()
    receiver.statuses = [503, 429]
    registry = CollectorRegistry()
    dispatcher = AlertDispatcher(config(receiver.url), catalog.engine, registry)

    async def main() -> None:
        await dispatcher.step()
        await dispatcher.aclose()

    asyncio.run(main())
    assert [r.status for r in receiver.received] == [503, 429, 200]
    assert dispatcher.store.dead_letters() == []
    assert sample(registry, "semcom_alerts_sent_total", target="ops") == 1
    assert sample(registry, "semcom_alert_retries_total", target="ops") == 2


def test_a_refused_connection_is_retried_then_a_dead_letter(catalog: Catalog) -> None:
    catalog.add_event()
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    dispatcher = AlertDispatcher(config(url, max_attempts=2), catalog.engine, CollectorRegistry())

    async def main() -> None:
        await dispatcher.step()
        [letter] = dispatcher.store.dead_letters()
        assert letter.attempts == 2
        assert "ConnectError" in letter.error
        with pytest.raises(DeliveryFailed):  # a replay that fails again is recorded
            await dispatcher.replay(letter.id)
        again = dispatcher.store.dead_letter(letter.id)
        assert again is not None
        assert (again.attempts, again.replayed_us) == (3, None)
        await dispatcher.aclose()

    asyncio.run(main())


def test_the_cursor_survives_a_restart(catalog: Catalog, receiver: Receiver) -> None:
    """Delivered events are not sent again by the next dispatcher; new ones are."""
    first = catalog.add_event()

    async def one_step() -> int:
        dispatcher = AlertDispatcher(config(receiver.url), catalog.engine, CollectorRegistry())
        try:
            return await dispatcher.step()
        finally:
            await dispatcher.aclose()

    assert asyncio.run(one_step()) == 1
    assert asyncio.run(one_step()) == 0
    second = catalog.add_event()
    assert asyncio.run(one_step()) == 1
    assert [r.body["event"]["id"] for r in receiver.received] == [first, second]


def test_start_at_end_skips_what_was_stored_before(catalog: Catalog, receiver: Receiver) -> None:
    catalog.add_event()
    cfg = config(receiver.url).model_copy(update={"start_at": "end"})

    async def main() -> tuple[int, int]:
        dispatcher = AlertDispatcher(cfg, catalog.engine, CollectorRegistry())
        before = await dispatcher.step()
        catalog.add_event()
        after = await dispatcher.step()
        await dispatcher.aclose()
        return before, after

    assert asyncio.run(main()) == (0, 1)
    assert len(receiver.received) == 1


def test_a_secret_from_the_environment(
    catalog: Catalog, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = config(receiver.url).model_dump()
    hook = base["webhooks"]["ops"]
    hook.pop("secret")
    hook["secret_env"] = "SEMCOM_TEST_HOOK_SECRET"
    cfg = AlertsConfig.model_validate(base)
    monkeypatch.delenv("SEMCOM_TEST_HOOK_SECRET", raising=False)
    with pytest.raises(
        AlertsSetupError,
        match=r"alerts\.webhooks\.ops\.secret_env: environment variable SEMCOM_TEST_HOOK_SECRET",
    ):
        AlertDispatcher(cfg, catalog.engine, CollectorRegistry())
    monkeypatch.setenv("SEMCOM_TEST_HOOK_SECRET", "receiver-secret")
    catalog.add_event()
    dispatcher = AlertDispatcher(cfg, catalog.engine, CollectorRegistry())
    assert "receiver-secret" not in repr(dispatcher.sinks)

    async def main() -> None:
        await dispatcher.step()
        await dispatcher.aclose()

    asyncio.run(main())
    assert [(r.signed, r.status) for r in receiver.received] == [(True, 200)]
    assert json.loads(receiver.received[0].raw)["rule"] == "crossings"
