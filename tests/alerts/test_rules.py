"""Rule matching (kind, camera, subject, class, direction, thresholds), quiet periods (also
through the dispatcher and across its restart), and the ``alerts`` config's errors."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from cloud.alerts.config import AlertRule, AlertsConfig
from cloud.alerts.delivery import Sink
from cloud.alerts.dispatcher import AlertDispatcher
from cloud.alerts.model import Camera, StoredEvent
from cloud.alerts.rules import QuietPeriods, matches
from tests.alerts.conftest import T0, Catalog

NORTH = Camera(7, "edge-01", "north")
EVENT = StoredEvent(
    id=1,
    camera=NORTH,
    track_id=3,
    kind="line_crossing",
    subject="stop-line",
    ordinal=0,
    at_us=T0,
    class_id=2,
    direction="in",
    value=None,
    unit=None,
    scene_version="v1",
    created_us=T0,
    details=None,
)
# a settled speed (its track ended); ordinal 0 is a track in progress's provisional speed
SPEED = replace(EVENT, kind="speed", subject="", ordinal=1, direction=None, value=82.5, unit="km/h")
DWELL = replace(EVENT, kind="zone_exit", subject="bus-stop", direction=None, value=150.0, unit="s")
# a zone's level changed to jammed (no track, no class; value: the window's occupancy)
JAM = replace(EVENT, kind="congestion", subject="queue", track_id=None, class_id=None,
              direction="jammed", value=2.5, unit="vehicles")  # fmt: skip


def rule(**fields: Any) -> AlertRule:
    return AlertRule.model_validate({"name": "r", "targets": ["t"], **fields})


@pytest.mark.parametrize(
    ("fields", "event", "expected"),
    [
        ({"kinds": "line_crossing"}, EVENT, True),
        ({"kinds": ["zone_entry", "zone_exit"]}, EVENT, False),
        ({"kinds": "line_crossing", "cameras": [7]}, EVENT, True),
        ({"kinds": "line_crossing", "cameras": [8]}, EVENT, False),
        ({"kinds": "line_crossing", "cameras": ["north"]}, EVENT, True),
        ({"kinds": "line_crossing", "cameras": ["edge-01/north"]}, EVENT, True),
        ({"kinds": "line_crossing", "cameras": ["edge-02/north", "south"]}, EVENT, False),
        ({"kinds": "line_crossing", "subjects": ["stop-line"]}, EVENT, True),
        ({"kinds": "line_crossing", "subjects": ["other"]}, EVENT, False),
        ({"kinds": "line_crossing", "classes": ["car", "truck"]}, EVENT, True),
        ({"kinds": "line_crossing", "classes": [7]}, EVENT, False),
        ({"kinds": "line_crossing", "classes": ["2"]}, EVENT, True),
        ({"kinds": "line_crossing", "directions": "in"}, EVENT, True),
        ({"kinds": "line_crossing", "directions": "out"}, EVENT, False),
        ({"kinds": "speed", "speed_above": 80}, SPEED, True),
        ({"kinds": "speed", "speed_above": 82.5}, SPEED, False),  # above, not at
        ({"kinds": "speed", "speed_above": 0.5, "speed_unit": "image_widths/s"}, SPEED, False),
        ({"kinds": "speed", "speed_above": 80}, replace(SPEED, value=None), False),
        ({"kinds": "speed", "speed_above": 80}, replace(SPEED, ordinal=0), False),
        ({"kinds": "speed"}, replace(SPEED, ordinal=0), False),  # provisional, any threshold
        ({"kinds": "speed"}, SPEED, True),
        ({"kinds": ["speed", "line_crossing"], "speed_above": 80}, EVENT, True),  # not a speed
        ({"kinds": "zone_exit", "dwell_above_s": 120}, DWELL, True),
        ({"kinds": "zone_exit", "dwell_above_s": 180}, DWELL, False),
        (
            {"kinds": "zone_exit", "dwell_above_s": 120},
            replace(DWELL, value=150e6, unit="us"),
            True,
        ),
        ({"kinds": "zone_exit", "dwell_above_s": 120}, replace(DWELL, unit=None), False),
        ({"kinds": "congestion"}, JAM, True),
        ({"kinds": "congestion", "levels": ["jammed", "free"]}, JAM, True),
        ({"kinds": "congestion", "levels": "slow"}, JAM, False),
        ({"kinds": "congestion", "levels": "free"}, replace(JAM, direction="free"), True),
        ({"kinds": "congestion", "subjects": "queue"}, JAM, True),
        ({"kinds": "congestion", "classes": "car"}, JAM, False),  # no class
        ({"kinds": ["congestion", "line_crossing"], "levels": "slow"}, EVENT, True),
        ({"kinds": "line_crossing"}, JAM, False),
    ],
)
def test_matching(fields: dict[str, Any], event: StoredEvent, expected: bool) -> None:
    assert matches(rule(**fields), event) is expected


def test_quiet_periods_per_rule_camera_and_subject() -> None:
    quiet = QuietPeriods()
    r = rule(kinds="line_crossing", quiet_s=60)
    s = 1_000_000
    assert quiet.admit(r, EVENT)
    assert not quiet.admit(r, replace(EVENT, at_us=T0 + 59 * s))
    assert not quiet.admit(r, replace(EVENT, at_us=T0 - 30 * s))  # late, inside the period
    assert quiet.admit(r, replace(EVENT, subject="other", at_us=T0 + 10 * s))
    assert quiet.admit(r, replace(EVENT, camera=Camera(8, "edge-01", "south")))
    assert quiet.admit(r.model_copy(update={"name": "r2"}), EVENT)
    assert quiet.admit(r, replace(EVENT, at_us=T0 + 60 * s))
    assert quiet.take_changes()[("r", 7, "stop-line")] == T0 + 60 * s
    assert quiet.take_changes() == {}
    no_quiet = rule(kinds="line_crossing")
    assert all(quiet.admit(no_quiet, EVENT) for _ in range(3))


class Recorder:
    """A target that records what it is given (the dispatcher's own logic under test)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[tuple[str, dict[str, Any]]] = []

    async def deliver(self, message: Any, *, key: str, attempts: int | None = None) -> int:
        self.got.append((key, message))
        return 1

    async def aclose(self) -> None:
        pass


def test_the_dispatcher_suppresses_repeats_and_remembers_across_restarts(
    catalog: Catalog,
) -> None:
    s = 1_000_000
    cfg = AlertsConfig.model_validate(
        {
            "start_at": "beginning",
            "rules": [
                {
                    "name": "busy",
                    "kinds": "line_crossing",
                    "cameras": ["edge-01/north"],
                    "quiet_s": 60,
                    "targets": ["hook"],
                }
            ],
            "webhooks": {"hook": {"url": "http://127.0.0.1:9/", "secret": "x"}},
        }
    )
    ids = [
        catalog.add_event(at_us=T0),
        catalog.add_event(at_us=T0 + 30 * s),  # quiet
        catalog.add_event(at_us=T0 + 10 * s, subject="exit-line"),
        catalog.add_event(at_us=T0 + 61 * s),
        catalog.add_event(camera="edge-01/south", at_us=T0),  # no match: camera
    ]

    def run_once(registry: CollectorRegistry) -> list[str]:
        hook = Recorder("hook")
        sinks: dict[str, Sink] = {"hook": hook}
        dispatcher = AlertDispatcher(cfg, catalog.engine, registry, sinks=sinks)
        asyncio.run(dispatcher.step())
        return [key for key, _ in hook.got]

    registry = CollectorRegistry()
    assert run_once(registry) == [f"{ids[0]}:busy", f"{ids[2]}:busy", f"{ids[3]}:busy"]
    assert registry.get_sample_value("semcom_alerts_suppressed_total", {"rule": "busy"}) == 1
    # a new dispatcher (a restarted cloud) knows the last alert's time from the database
    catalog.add_event(at_us=T0 + 100 * s)  # quiet: 39 s after the last alert
    last = catalog.add_event(at_us=T0 + 122 * s)
    assert run_once(CollectorRegistry()) == [f"{last}:busy"]


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        (
            {"rules": [{"name": "a", "kinds": "speed", "targets": ["pager"]}]},
            "rules[0] (a).targets: unknown 'pager' (known targets: none: configure webhooks "
            "or mqtt)",
        ),
        (
            {
                "rules": [{"name": "a", "kinds": "speed", "targets": ["mqtt"]}],
                "webhooks": {"ops": {"url": "https://h/x", "secret": "s"}},
            },
            "unknown 'mqtt' (known targets: ops)",
        ),
        (
            {"rules": [{"name": "a", "kinds": "zone_entry", "speed_above": 3, "targets": []}]},
            "targets",
        ),
        (
            {"rules": [{"name": "a", "kinds": "zone_entry", "speed_above": 3, "targets": "x"}]},
            "rule a: speed_above applies to speed events, and kinds (zone_entry) has none",
        ),
        (
            {"rules": [{"name": "a", "kinds": "speed", "dwell_above_s": 3, "targets": "x"}]},
            "dwell_above_s applies to zone_exit and stopped_vehicle events",
        ),
        ({"rules": [{"name": "a", "kinds": "speeding", "targets": "x"}]}, "kinds"),
        (
            {"rules": [{"name": "a", "kinds": "speed", "levels": "jammed", "targets": "x"}]},
            "rule a: levels apply to congestion events, and kinds (speed) has none",
        ),
        (
            {"rules": [{"name": "a", "kinds": "congestion", "levels": "stuck", "targets": "x"}]},
            "levels",
        ),
        (
            {"rules": [{"name": "a", "kinds": "speed", "classes": ["carriage"], "targets": "x"}]},
            "unknown class name 'carriage'",
        ),
        ({"rules": [{"name": "a b", "kinds": "speed", "targets": "x"}]}, "name"),
        ({"webhooks": {"ops": {"url": "ftp://h/x", "secret": "s"}}}, "not an http(s) URL"),
        ({"webhooks": {"ops": {"url": "https://h/x"}}}, "give exactly one of secret and"),
        (
            {"webhooks": {"ops": {"url": "https://h/x", "secret": "s", "secret_env": "S"}}},
            "give exactly one of secret and secret_env",
        ),
        ({"webhooks": {"mqtt": {"url": "https://h/x", "secret": "s"}}}, "is the broker's"),
        ({"mqtt": {"host": "b", "topic_prefix": "a/#"}}, "topic_prefix"),
        ({"mqtt": {"host": "b", "topic_prefix": "a/"}}, "topic_prefix"),
        ({"mqtt": {"host": "b", "password": "p"}}, "a password needs a username"),
        ({"mqtt": {"host": "b", "qos": 3}}, "qos"),
    ],
)
def test_config_errors_say_what_is_wrong(alerts: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        AlertsConfig.model_validate(alerts)
    assert message in str(err.value)


def test_secrets_never_show() -> None:
    cfg = AlertsConfig.model_validate(
        {
            "webhooks": {"ops": {"url": "https://u:pw@h/x", "secret": "hook-secret"}},
            "mqtt": {"host": "b", "username": "u", "password": "mqtt-secret"},
        }
    )
    text = f"{cfg!r} {cfg} {cfg.model_dump()} {cfg.model_dump_json()}"
    assert "hook-secret" not in text
    assert "mqtt-secret" not in text
    assert cfg.mqtt is not None
    assert cfg.mqtt.effective_port == 1883
    assert cfg.mqtt.model_copy(update={"tls": True}).effective_port == 8883
