"""Prometheus metrics of the cloud service, on a registry per app (no global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class CloudMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.signaling = Counter(
            "semcom_signaling_requests", "Session requests by outcome.", ["outcome"], registry=r
        )
        self.auth_failures = Counter(
            "semcom_auth_failures", "Refused session requests by reason.", ["reason"], registry=r
        )
        self.sessions = Gauge("semcom_sessions_active", "Connected edges.", registry=r)
        self.received = Counter("semcom_frames_received", "Frames received.", registry=r)
        self.stored = Counter("semcom_frames_stored", "Frames stored (new).", registry=r)
        self.duplicates = Counter(
            "semcom_frames_duplicate", "Frames received again and ignored.", registry=r
        )
        self.errors = Counter(
            "semcom_errors_sent", "Error messages sent to edges by code.", ["code"], registry=r
        )
