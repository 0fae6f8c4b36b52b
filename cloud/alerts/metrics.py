"""Prometheus metrics of the alert dispatcher, on the app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.sent = Counter(
            "semcom_alerts_sent", "Alerts delivered, by target.", ["target"], registry=r
        )
        self.failed = Counter(
            "semcom_alerts_failed",
            "Alerts not delivered after their last attempt (dead letters), by target.",
            ["target"],
            registry=r,
        )
        self.retries = Counter(
            "semcom_alert_retries",
            "Delivery attempts that failed and were tried again, by target.",
            ["target"],
            registry=r,
        )
        self.suppressed = Counter(
            "semcom_alerts_suppressed",
            "Matching events held back by the rule's quiet period, by rule.",
            ["rule"],
            registry=r,
        )
        self.replayed = Counter(
            "semcom_alert_replays",
            "Dead-letter replays, by target and outcome (delivered, failed).",
            ["target", "outcome"],
            registry=r,
        )
        self.state_failed = Counter(
            "semcom_alert_state_failures",
            "Retained MQTT camera states that could not be published.",
            registry=r,
        )
        self.cursor = Gauge(
            "semcom_alerts_cursor",
            "Id of the last analytics event the dispatcher has handled.",
            registry=r,
        )
