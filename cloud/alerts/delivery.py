"""Delivery of one alert message to one target, with retries: signed webhooks (httpx) and an
MQTT broker (aiomqtt). Both retry with exponential backoff and jitter (tenacity) and raise
:class:`DeliveryFailed` after their last attempt; the dispatcher then writes a dead letter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiomqtt
import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from cloud.alerts.config import MQTT_TARGET, MqttConfig, WebhookConfig, redact_url
from cloud.alerts.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

logger = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 500
_USER_AGENT = "semcom-alerts/1"


class DeliveryFailed(Exception):
    """The last attempt failed; ``error`` says why (no secrets), ``attempts`` how many ran."""

    def __init__(self, error: str, attempts: int) -> None:
        super().__init__(error)
        self.error = error[:_MAX_ERROR_CHARS]
        self.attempts = attempts


class _Retryable(Exception):
    """A failure worth another attempt (connection, timeout, 5xx, 429; broker errors)."""


class _Final(Exception):
    """A failure no retry can fix (an HTTP 4xx other than 429)."""


class Sink(Protocol):
    """One target."""

    name: str

    async def deliver(
        self, message: Mapping[str, Any], *, key: str, attempts: int | None = None
    ) -> int:
        """Send ``message`` (``key``: its idempotency key) in up to ``attempts`` tries
        (default: the target's ``max_attempts``); returns the attempts made, raises
        :class:`DeliveryFailed` after the last."""
        ...

    async def aclose(self) -> None: ...


def encode(message: Mapping[str, Any]) -> bytes:
    """The JSON bytes sent (and signed): compact, UTF-8."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def _retrying(attempts: int, first_s: float, max_s: float, what: str) -> AsyncRetrying:
    def log(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "%s: attempt %d/%d failed (%s); retrying in %.1f s",
            what,
            state.attempt_number,
            attempts,
            exc,
            wait,
        )

    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_s, max=max_s) + wait_random(0, first_s),
        retry=retry_if_exception_type(_Retryable),
        before_sleep=log,
        reraise=True,
    )


class WebhookSink:
    """POSTs signed JSON (see :mod:`cloud.alerts.signing`) to one URL."""

    def __init__(
        self,
        name: str,
        config: WebhookConfig,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.config = config
        self._secret = secret
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._where = f"webhook {name} ({redact_url(config.url)})"

    def __repr__(self) -> str:  # never the secret
        return f"WebhookSink({self._where})"

    async def deliver(
        self, message: Mapping[str, Any], *, key: str, attempts: int | None = None
    ) -> int:
        body = encode(message)
        tries = attempts or self.config.max_attempts
        made = 0
        try:
            async for attempt in _retrying(
                tries, self.config.backoff_s, self.config.backoff_max_s, self._where
            ):
                with attempt:
                    made += 1
                    await self._post(body, key)
        except (_Retryable, _Final) as exc:
            raise DeliveryFailed(str(exc), made) from None
        return made

    async def _post(self, body: bytes, key: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers={"User-Agent": _USER_AGENT}, follow_redirects=False
            )
        sent = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(sent),
            SIGNATURE_HEADER: signature(self._secret, sent, body),
            IDEMPOTENCY_HEADER: key,
        }
        try:
            response = await self._client.post(
                self.config.url, content=body, headers=headers, timeout=self.config.timeout_s
            )
        except httpx.TimeoutException:
            raise _Retryable(f"no answer within {self.config.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        if response.is_success:
            return
        text = " ".join(response.text[:200].split())
        problem = f"HTTP {response.status_code}" + (f": {text}" if text else "")
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retryable(problem)
        raise _Final(problem)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class MqttSink:
    """Publishes to one broker over one connection, made again (with backoff) when lost.

    Topics: ``<prefix>/<edge>/<camera>/events`` (each alert, QoS ``qos``) and
    ``<prefix>/<edge>/<camera>/state`` (the camera's state, retained, QoS 1).
    """

    name = MQTT_TARGET

    def __init__(self, config: MqttConfig, password: str | None) -> None:
        self.config = config
        self._password = password
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        self._where = f"MQTT broker {config.host}:{config.effective_port}"

    def __repr__(self) -> str:
        return f"MqttSink({self._where})"

    def topic(self, camera: Mapping[str, Any], leaf: str) -> str:
        return f"{self.config.topic_prefix}/{camera['edge_id']}/{camera['name']}/{leaf}"

    async def deliver(
        self, message: Mapping[str, Any], *, key: str, attempts: int | None = None
    ) -> int:
        del key  # MQTT has no idempotency header; the message carries the event id and rule
        topic = self.topic(message["camera"], "events")
        return await self.publish(
            topic, encode(message), qos=self.config.qos, retain=False, attempts=attempts
        )

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, attempts: int | None = None
    ) -> int:
        tries = attempts or self.config.max_attempts
        made = 0
        try:
            async for attempt in _retrying(
                tries, self.config.backoff_s, self.config.backoff_max_s, self._where
            ):
                with attempt:
                    made += 1
                    await self._publish_once(topic, payload, qos, retain)
        except _Retryable as exc:
            raise DeliveryFailed(str(exc), made) from None
        return made

    async def _publish_once(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        client = None
        try:
            client = await self._connected()
            await client.publish(
                topic, payload, qos=qos, retain=retain, timeout=self.config.timeout_s
            )
        except (aiomqtt.MqttError, OSError, asyncio.TimeoutError) as exc:
            if client is not None:
                await self._drop(client)
            raise _Retryable(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)) from None

    async def _connected(self) -> aiomqtt.Client:
        async with self._lock:
            if self._client is not None:
                return self._client
            c = self.config
            tls = None
            if c.tls:
                tls = ssl.create_default_context(cafile=c.ca_file)
            client = aiomqtt.Client(
                c.host,
                c.effective_port,
                username=c.username,
                password=self._password,
                identifier=c.client_id,
                keepalive=c.keepalive_s,
                timeout=c.timeout_s,
                tls_context=tls,
            )
            try:
                await client.__aenter__()
            except (aiomqtt.MqttError, OSError, asyncio.TimeoutError) as exc:
                raise aiomqtt.MqttError(f"cannot connect to {self._where}: {exc}") from None
            logger.info("alerts: connected to %s", self._where)
            self._client = client
            return client

    async def _drop(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
        with contextlib.suppress(Exception):
            await client.__aexit__(None, None, None)

    async def aclose(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
