"""The ``alerts`` section of the cloud configuration: rules over analytics events, and where
matching events are delivered (signed webhooks, an MQTT broker).

Example::

    alerts:
      rules:
        - name: speeding
          kinds: [speed]
          cameras: [edge-01/north]        # "edge/camera", a camera name on any edge, or an id
          classes: [car, truck]           # COCO names or class ids
          speed_above: 70                 # in speed_unit (km/h)
          quiet_s: 300                    # one alert per (rule, camera, subject) per 5 minutes
          targets: [ops, mqtt]
        - name: long-stay
          kinds: [zone_exit]
          subjects: [bus-stop]
          dwell_above_s: 120
          targets: [ops]
        - name: jams
          kinds: [congestion]             # a zone's level changed (per closed window)
          levels: [jammed, free]          # to jammed, and back to free (cleared)
          targets: [ops]
      webhooks:
        ops:
          url: https://ops.example.org/semcom
          secret_env: OPS_WEBHOOK_SECRET  # or secret: ... (in the file)
      mqtt:
        host: broker.example.org
        username: semcom
        password_env: MQTT_PASSWORD

A rule's targets name webhooks, or ``mqtt`` for the broker. Secrets come from the file, from
``SEMCOM_CLOUD__ALERTS__...`` variables (e.g. ``SEMCOM_CLOUD__ALERTS__WEBHOOKS__OPS__SECRET``)
or from the variable a ``*_env`` field names; they are never logged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    field_validator,
    model_validator,
)

from cloud.describe.schema import COCO_NAMES

EventKind = Literal[
    "line_crossing",
    "zone_entry",
    "zone_exit",
    "speed",
    "stopped_vehicle",
    "wrong_way",
    "congestion",
]
EVENT_KINDS: Final[tuple[str, ...]] = get_args(EventKind)
#: The levels a zone's congestion changes to (``direction`` of a ``congestion`` event).
CongestionLevel = Literal["free", "slow", "jammed"]
#: Kinds whose ``value`` is a duration (dwell in a zone, time stopped).
DURATION_KINDS: Final = frozenset({"zone_exit", "stopped_vehicle"})
SpeedUnit = Literal["km/h", "image_widths/s"]

#: The target name of the MQTT broker in a rule's ``targets``.
MQTT_TARGET: Final = "mqtt"
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ConfigSecretMissing(Exception):
    """A ``*_env`` field names an environment variable that is not set (or is empty)."""


def _listify(value: Any) -> Any:
    """A single value where a list is expected (``kinds: speed``) -> a one-item list."""
    return [value] if isinstance(value, (str, int)) else value


def _class_id(value: Any) -> Any:
    """A COCO class name -> its id; ids pass."""
    if isinstance(value, str) and not value.isdigit():
        try:
            return COCO_NAMES.index(value.strip().lower())
        except ValueError:
            raise ValueError(
                f"unknown class name {value!r}: give a COCO name (car, truck, bus, person, ...) "
                "or a class id"
            ) from None
    if isinstance(value, str):
        return int(value)
    return value


def _secret_from_env(variable: str, where: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigSecretMissing(f"{where}: environment variable {variable} is not set")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_ID = r"[A-Za-z0-9][A-Za-z0-9._-]*"
#: A camera in a rule: its id, its name on any edge, or ``edge/name``.
CameraRef = StrictInt | Annotated[str, Field(pattern=f"^{_ID}(/{_ID})?$")]


class AlertRule(_Model):
    """Which events raise an alert, and where it goes. Empty filters match everything."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique rule name: [A-Za-z0-9._-], 64 characters at most; sent with each "
        "alert and part of its idempotency key.",
    )
    kinds: Annotated[tuple[EventKind, ...], BeforeValidator(_listify)] = Field(
        min_length=1,
        description="Event kinds that match: line_crossing, zone_entry, zone_exit, speed, "
        "stopped_vehicle, wrong_way, congestion (a zone's level changed; one or a list).",
    )
    cameras: Annotated[tuple[CameraRef, ...], BeforeValidator(_listify)] = Field(
        (),
        description="Cameras that match: 'edge/camera', a camera name (on any edge) or a "
        "camera id; empty: every camera.",
    )
    subjects: Annotated[tuple[str, ...], BeforeValidator(_listify)] = Field(
        (), description="Line or zone names that match; empty: every line and zone."
    )
    classes: Annotated[
        tuple[Annotated[int, BeforeValidator(_class_id), Field(ge=0)], ...],
        BeforeValidator(_listify),
    ] = Field(
        (),
        description="Object classes that match: COCO names (car, truck, ...) or class ids; "
        "empty: every class (and events without one).",
    )
    directions: Annotated[tuple[Literal["in", "out"], ...], BeforeValidator(_listify)] = Field(
        (), description="Line-crossing directions that match (in, out); empty: both."
    )
    levels: Annotated[tuple[CongestionLevel, ...], BeforeValidator(_listify)] = Field(
        (),
        description="Congestion events whose new level is one of these match (free: a jam "
        "cleared, slow, jammed); empty: every level.",
    )
    speed_above: float | None = Field(
        None,
        ge=0,
        description="Only speed events whose value, in speed_unit, is above this; events "
        "measured in another unit do not match. Speeds match once settled (the track ended).",
    )
    speed_unit: SpeedUnit = Field(
        "km/h",
        description="Unit of speed_above: km/h (calibrated scenes) or image_widths/s.",
    )
    dwell_above_s: float | None = Field(
        None,
        ge=0,
        description="Only zone_exit and stopped_vehicle events whose duration (dwell in the "
        "zone, time stopped) is above this many seconds.",
    )
    quiet_s: float = Field(
        0.0,
        ge=0,
        description="After an alert, matching events of the same camera and subject (line or "
        "zone) within this many seconds of event time raise none (0: every event alerts).",
    )
    targets: Annotated[tuple[str, ...], BeforeValidator(_listify)] = Field(
        min_length=1,
        description="Where alerts go: webhook names, and/or 'mqtt' for the broker.",
    )

    @model_validator(mode="after")
    def _thresholds_fit_kinds(self) -> AlertRule:
        if self.speed_above is not None and "speed" not in self.kinds:
            raise ValueError(
                f"rule {self.name}: speed_above applies to speed events, and kinds "
                f"({', '.join(self.kinds)}) has none"
            )
        if self.dwell_above_s is not None and not DURATION_KINDS & set(self.kinds):
            raise ValueError(
                f"rule {self.name}: dwell_above_s applies to zone_exit and stopped_vehicle "
                f"events, and kinds ({', '.join(self.kinds)}) has neither"
            )
        if self.directions and "line_crossing" not in self.kinds:
            raise ValueError(
                f"rule {self.name}: directions apply to line_crossing events, and kinds "
                f"({', '.join(self.kinds)}) has none"
            )
        if self.levels and "congestion" not in self.kinds:
            raise ValueError(
                f"rule {self.name}: levels apply to congestion events, and kinds "
                f"({', '.join(self.kinds)}) has none"
            )
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"rule {self.name}: a target is named twice")
        return self


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {redact_url(url)!r}")
    return url


def redact_url(url: str) -> str:
    """``url`` without the user information (``user:pass@``) it may hold, for logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


class WebhookConfig(_Model):
    """An HTTP endpoint that receives signed alerts (``POST``, JSON)."""

    url: Annotated[str, BeforeValidator(str.strip)] = Field(
        description="http(s) URL the alerts are POSTed to."
    )
    secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key of the X-Semcom-Signature header (in the file, or "
        "SEMCOM_CLOUD__ALERTS__WEBHOOKS__<NAME>__SECRET).",
    )
    secret_env: str | None = Field(
        None,
        pattern=_ENV_NAME,
        description="Name of an environment variable that holds the secret (read at start).",
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Timeout of one request (s).")
    max_attempts: int = Field(
        5,
        ge=1,
        le=50,
        description="Requests per alert: connection errors, timeouts, 5xx and 429 answers are "
        "retried; any other 4xx is final. After the last, the alert is a dead letter.",
    )
    backoff_s: float = Field(
        1.0,
        ge=0,
        description="First retry delay (s); doubles per attempt up to backoff_max_s, plus "
        "up to backoff_s of random jitter.",
    )
    backoff_max_s: float = Field(60.0, ge=0, description="Longest retry delay (s).")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        return _http_url(url)

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookConfig:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret and secret_env")
        if self.secret is not None and not self.secret.get_secret_value():
            raise ValueError("secret is empty")
        return self

    def resolve_secret(self, name: str) -> bytes:
        """The signing key; raises :class:`ConfigSecretMissing` for an unset variable."""
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        assert self.secret_env is not None
        return _secret_from_env(self.secret_env, f"alerts.webhooks.{name}.secret_env").encode()


class MqttConfig(_Model):
    """The MQTT broker alerts and per-camera state are published to (see docs/alerts.md)."""

    host: str = Field(min_length=1, description="Broker host name or address.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Broker port; default 1883, or 8883 with tls."
    )
    username: str | None = Field(
        None, description="User name (also SEMCOM_CLOUD__ALERTS__MQTT__USERNAME)."
    )
    password: SecretStr | None = Field(
        None, description="Password (also SEMCOM_CLOUD__ALERTS__MQTT__PASSWORD)."
    )
    password_env: str | None = Field(
        None,
        pattern=_ENV_NAME,
        description="Name of an environment variable that holds the password (read at start).",
    )
    tls: bool = Field(False, description="Connect over TLS (system CA certificates).")
    ca_file: str | None = Field(None, description="PEM CA bundle for tls instead of the system's.")
    topic_prefix: str = Field(
        "semcom",
        pattern=r"^[^/#+\x00]+(/[^/#+\x00]+)*$",
        description="First topic levels: <prefix>/<edge>/<camera>/events and .../state. No "
        "wildcards (+, #), no empty level (leading, trailing or double slash).",
    )
    client_id: str = Field(
        "semcom-cloud",
        min_length=1,
        max_length=64,
        description="MQTT client identifier (unique per cloud replica at the broker).",
    )
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the event messages (1: at least once).")
    retain_state: bool = Field(
        True,
        description="Publish each camera's state (last hour's counts per class, newest "
        "incident) as a retained message at <prefix>/<edge>/<camera>/state.",
    )
    publish_all: bool = Field(
        False,
        description="Publish every analytics event to the events topic, not only those a rule "
        "with the mqtt target matched (those carry the rule's name).",
    )
    keepalive_s: int = Field(60, ge=5, le=65535, description="MQTT keepalive (s).")
    timeout_s: float = Field(10.0, gt=0, le=300, description="Connect and publish timeout (s).")
    max_attempts: int = Field(
        5,
        ge=1,
        le=50,
        description="Connect-and-publish attempts per message; the connection is made again "
        "with backoff between them. After the last, the message is a dead letter.",
    )
    backoff_s: float = Field(1.0, ge=0, description="First reconnect delay (s); doubles.")
    backoff_max_s: float = Field(60.0, ge=0, description="Longest reconnect delay (s).")

    @model_validator(mode="after")
    def _credentials(self) -> MqttConfig:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give at most one of password and password_env")
        if (self.password is not None or self.password_env is not None) and not self.username:
            raise ValueError("a password needs a username")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)

    def resolve_password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_env is not None:
            return _secret_from_env(self.password_env, "alerts.mqtt.password_env")
        return None


class AlertsConfig(_Model):
    """Alerts on analytics events: rules, and the webhooks and broker they deliver to."""

    rules: tuple[AlertRule, ...] = Field(
        (), description="Alert rules; an event raises one alert per rule it matches."
    )
    webhooks: dict[str, WebhookConfig] = Field(
        default_factory=dict, description="Webhook targets by name ([A-Za-z0-9._-])."
    )
    mqtt: MqttConfig | None = Field(None, description="The MQTT broker (target name 'mqtt').")
    poll_s: float = Field(
        1.0, gt=0, le=600, description="How often the dispatcher looks for new events (s)."
    )
    batch: int = Field(
        200, ge=1, le=10_000, description="Events read and dispatched per step at most."
    )
    concurrency: int = Field(
        8, ge=1, le=256, description="Deliveries in flight at once (across targets)."
    )
    start_at: Literal["end", "beginning"] = Field(
        "end",
        description="Where a dispatcher without a saved cursor starts: end (only events "
        "stored from now on) or beginning (every stored event).",
    )

    @model_validator(mode="after")
    def _names(self) -> AlertsConfig:
        problems = []
        bad = [n for n in self.webhooks if not re.fullmatch(NAME_PATTERN, n)]
        if bad:
            problems.append(f"webhooks: invalid names {', '.join(map(repr, bad))}")
        if MQTT_TARGET in self.webhooks:
            problems.append(f"webhooks: {MQTT_TARGET!r} is the broker's target name")
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                problems.append(f"rules[{i}]: rule name {rule.name!r} is used twice")
            seen.add(rule.name)
            known = {*self.webhooks, *([MQTT_TARGET] if self.mqtt else [])}
            unknown = [t for t in rule.targets if t not in known]
            if unknown:
                have = ", ".join(sorted(known)) or "none: configure webhooks or mqtt"
                problems.append(
                    f"rules[{i}] ({rule.name}).targets: unknown {', '.join(map(repr, unknown))}"
                    f" (known targets: {have})"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def targets(self) -> Mapping[str, WebhookConfig | MqttConfig]:
        out: dict[str, WebhookConfig | MqttConfig] = dict(self.webhooks)
        if self.mqtt is not None:
            out[MQTT_TARGET] = self.mqtt
        return out
