"""MQTT delivery through a real Mosquitto broker: events on <prefix>/<edge>/<camera>/events,
retained state on .../state read by a fresh subscriber, dead letters while the broker is down
and their replay once it is back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt
from prometheus_client import CollectorRegistry

from cloud.alerts.config import AlertsConfig
from cloud.alerts.dispatcher import AlertDispatcher
from tests.alerts.conftest import T0, Broker, Catalog

NOW_S = T0 / 1e6 + 600  # the dispatcher's clock: ten minutes after the events


def config(broker: Broker, **mqtt: Any) -> AlertsConfig:
    return AlertsConfig.model_validate(
        {
            "start_at": "beginning",
            "rules": [
                {"name": "crossings", "kinds": ["line_crossing"], "targets": ["mqtt"]},
                {"name": "incidents", "kinds": ["wrong_way", "stopped_vehicle"], "targets": "mqtt"},
            ],
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": "city/semcom",
                "client_id": "semcom-test",
                "max_attempts": 2,
                "backoff_s": 0.01,
                "timeout_s": 2,
                **mqtt,
            },
        }
    )


async def collect(broker: Broker, topic: str, count: int, timeout: float = 5.0) -> list[Any]:
    """The first ``count`` messages on ``topic`` (a fresh client: retained ones too)."""
    out: list[Any] = []

    async def read(client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            assert isinstance(msg.payload, bytes)
            out.append((str(msg.topic), json.loads(msg.payload), msg.retain))
            if len(out) == count:
                return

    async with aiomqtt.Client(broker.host, broker.port, identifier=f"reader-{topic}") as client:
        await client.subscribe(topic, qos=1)
        await asyncio.wait_for(read(client), timeout)
    return out


def test_events_and_the_retained_state_on_the_documented_topics(
    catalog: Catalog, mosquitto: Broker
) -> None:
    crossing = catalog.add_event(class_id=2, at_us=T0)
    catalog.add_event(class_id=7, at_us=T0 + 1_000_000)  # a truck
    catalog.add_event(class_id=2, at_us=T0 - 2 * 3600 * 1_000_000)  # older than the last hour
    wrong_way = catalog.add_event(
        kind="wrong_way", subject="ramp", direction=None, value=5.0, unit="m", at_us=T0 + 5
    )
    catalog.add_event(camera="edge-02/north", class_id=2)  # another camera, another topic
    dispatcher = AlertDispatcher(
        config(mosquitto), catalog.engine, CollectorRegistry(), clock=lambda: NOW_S
    )

    async def main() -> tuple[list[Any], list[Any]]:
        # a subscriber of the events topic, there before the events are published
        reader = asyncio.create_task(collect(mosquitto, "city/semcom/edge-01/north/events", 4))
        await asyncio.sleep(0.3)
        assert await dispatcher.step() == 5
        events = await reader
        await dispatcher.aclose()
        # a fresh subscriber, after the publisher is gone: the retained states
        states = await collect(mosquitto, "city/semcom/+/+/state", 2)
        return events, states

    events, states = asyncio.run(main())
    assert sorted((e[1]["rule"], e[1]["event"]["kind"]) for e in events) == [
        ("crossings", "line_crossing"),
        ("crossings", "line_crossing"),
        ("crossings", "line_crossing"),
        ("incidents", "wrong_way"),
    ]
    first = min((e[1] for e in events), key=lambda m: m["event"]["id"])
    assert first["event"]["id"] == crossing
    assert first["camera"]["edge_id"] == "edge-01"
    assert first["camera"]["name"] == "north"
    assert all(not retain for *_, retain in events)
    by_topic = {topic: (state, retain) for topic, state, retain in states}
    state, retained = by_topic["city/semcom/edge-01/north/state"]
    assert retained
    assert state["window_s"] == 3600
    assert state["counts"] == {"line_crossing": {"car": 1, "truck": 1}, "wrong_way": {"car": 1}}
    assert state["newest_incident"]["id"] == wrong_way
    assert state["newest_incident"]["kind"] == "wrong_way"
    other, _ = by_topic["city/semcom/edge-02/north/state"]
    assert other["counts"] == {"line_crossing": {"car": 1}}
    assert other["newest_incident"] is None


def test_publish_all_sends_every_event_once(catalog: Catalog, mosquitto: Broker) -> None:
    """Events no mqtt rule matched go out with rule null; matched ones once per rule."""
    catalog.add_event(kind="zone_entry", subject="box", direction=None)
    catalog.add_event()
    cfg = config(mosquitto, publish_all=True, retain_state=False)
    dispatcher = AlertDispatcher(cfg, catalog.engine, CollectorRegistry(), clock=lambda: NOW_S)

    async def main() -> list[Any]:
        reader = asyncio.create_task(collect(mosquitto, "city/semcom/+/+/events", 2))
        await asyncio.sleep(0.3)
        await dispatcher.step()
        await dispatcher.aclose()
        return await reader

    got = asyncio.run(main())
    assert sorted((m["event"]["kind"], m["rule"] or "") for _, m, _ in got) == [
        ("line_crossing", "crossings"),
        ("zone_entry", ""),
    ]


def test_broker_down_dead_letters_then_replay_after_it_returns(
    catalog: Catalog, mosquitto: Broker
) -> None:
    registry = CollectorRegistry()
    dispatcher = AlertDispatcher(
        config(mosquitto, retain_state=False), catalog.engine, registry, clock=lambda: NOW_S
    )

    async def main() -> list[Any]:
        catalog.add_event()
        await dispatcher.step()  # connected and delivered
        mosquitto.stop()
        event = catalog.add_event()
        await dispatcher.step()  # the connection is lost: reconnects fail, a dead letter
        [letter] = dispatcher.store.dead_letters()
        assert (letter.target, letter.rule, letter.event_id, letter.attempts) == (
            "mqtt",
            "crossings",
            event,
            2,
        )
        assert letter.error
        mosquitto.start()
        reader = asyncio.create_task(collect(mosquitto, "city/semcom/edge-01/north/events", 1))
        await asyncio.sleep(0.3)
        replayed = await dispatcher.replay(letter.id, attempts=3)
        assert replayed is not None
        assert replayed.replayed_us is not None
        got = await reader
        await dispatcher.aclose()
        return got

    [(_, message, _)] = asyncio.run(main())
    assert message["rule"] == "crossings"
    assert registry.get_sample_value("semcom_alerts_failed_total", {"target": "mqtt"}) == 1
    assert registry.get_sample_value("semcom_alerts_sent_total", {"target": "mqtt"}) == 2
