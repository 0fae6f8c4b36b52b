"""The LLM describer: any OpenAI-compatible chat-completions endpoint, asynchronously.

One request per attempt: a system prompt, the window's metadata as JSON text and the rebuilt
crops as ``image_url`` parts (PNG data URLs), with ``response_format`` set to the strict JSON
schema of :class:`~cloud.describe.schema.TrafficDescription`. The reply is parsed and
validated with pydantic; timeouts, connection errors, retryable HTTP statuses (408, 409, 429,
5xx), malformed JSON, truncated or refused replies and schema violations are retried with
exponential backoff (jittered) up to ``max_attempts``; other HTTP errors (a wrong model name,
a bad key) fail at once. A semaphore bounds the requests in flight. Tokens reported by the
endpoint are summed per description and counted in Prometheus. openai's response objects
never leave this module.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from pydantic import ValidationError

from cloud.describe.base import Described, Usage
from cloud.describe.config import DescriberConfig
from cloud.describe.context import DescribeContext
from cloud.describe.errors import DescribeFailed, ReplyError
from cloud.describe.metrics import DescriberMetrics
from cloud.describe.schema import TrafficDescription, response_format

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam
    from openai.types.shared_params import ResponseFormatJSONSchema

logger = logging.getLogger(__name__)

MAX_BACKOFF_S: Final = 60.0
_RETRY_STATUS: Final = frozenset({408, 409, 429})
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)

SYSTEM_PROMPT: Final = (
    "You describe road traffic seen by one fixed camera during one time window, for a "
    "traffic operator. You get metadata from the camera's detector and tracker (classes, "
    "normalised boxes, tracks, per-frame counts, apparent speeds in image widths per second; "
    "when the camera has an analytics scene, also `analytics`: counted line crossings, zone "
    "entries, incidents and measured speeds, each with its unit, km/h when calibrated) "
    "and small images of some road users. The images are NOT camera pixels: each was rebuilt "
    "by a neural decoder from the object's compact embedding, so colours and details are "
    "approximate. Count distinct road users by class (a track is one object); judge "
    "congestion from density and speed; list incidents only when the data supports them "
    "(e.g. a track flagged stopped_vehicle, or an analytics incident), naming their track "
    "ids; prefer the analytics counts and measured speeds where given; write a one-paragraph "
    "summary. Answer with the JSON object the schema asks for, nothing else."
)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def build_messages(context: DescribeContext, images: Mapping[int, bytes]) -> list[dict[str, Any]]:
    """The chat messages of one request: metadata as text, each crop after its label."""
    content: list[dict[str, Any]] = [
        {
            "type": "text",
            "text": "Metadata of the window (JSON):\n"
            + json.dumps(context.prompt_data(), separators=(",", ":")),
        }
    ]
    for detection_id, png in images.items():
        label = context.image_labels.get(detection_id, f"detection {detection_id}")
        content.append({"type": "text", "text": f"Rebuilt crop of {label}:"})
        content.append({"type": "image_url", "image_url": {"url": _data_url(png), "detail": "low"}})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def parse_reply(content: str | None) -> TrafficDescription:
    """The validated description in a reply's text; :class:`ReplyError` otherwise.

    A Markdown code fence around the JSON (some local servers add one) is tolerated.
    """
    if not content or not content.strip():
        raise ReplyError("malformed: the reply is empty")
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplyError(f"malformed: not JSON ({exc.msg} at char {exc.pos})") from None
    try:
        return TrafficDescription.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in exc.errors()
        )
        raise ReplyError(f"invalid: schema violation: {problems[:500]}") from None


class LlmDescriber:
    """:class:`~cloud.describe.base.Describer` over an OpenAI-compatible endpoint."""

    wants_images = True

    def __init__(
        self,
        config: DescriberConfig,
        metrics: DescriberMetrics,
        client: AsyncOpenAI | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if config.base_url is None or not config.model:
            raise ValueError("the LLM describer needs describer.base_url and describer.model")
        if client is None:
            from openai import AsyncOpenAI

            key = config.api_key.get_secret_value() if config.api_key else "unused"
            client = AsyncOpenAI(
                base_url=config.base_url, api_key=key, timeout=config.timeout_s, max_retries=0
            )
        self._client = client
        self._model = config.model
        self._config = config
        self._metrics = metrics
        self._sleep = sleep
        self._slots = asyncio.Semaphore(config.concurrency)

    @property
    def name(self) -> str:
        return self._model

    async def aclose(self) -> None:
        await self._client.close()

    async def describe(self, context: DescribeContext, images: Mapping[int, bytes]) -> Described:
        messages = build_messages(context, images)
        usage = Usage()
        last = "no attempt"
        attempts = self._config.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                output, used = await self._request(messages)
            except _Retry as exc:
                usage += exc.usage
                last = str(exc)
                if attempt < attempts:
                    delay = min(MAX_BACKOFF_S, self._config.backoff_s * 2 ** (attempt - 1))
                    delay *= 0.5 + random.random() / 2
                    logger.info(
                        "describer: attempt %d/%d for camera %d failed (%s); retrying in %.1f s",
                        attempt, attempts, context.window.camera_id, last, delay,
                    )  # fmt: skip
                    await self._sleep(delay)
                continue
            usage += used
            return Described(output, self._model, usage, attempt, tuple(images))
        raise DescribeFailed(f"no valid description after {attempts} attempts: {last}", attempts)

    async def _request(self, messages: list[dict[str, Any]]) -> tuple[TrafficDescription, Usage]:
        """One request; :class:`_Retry` for what another attempt may fix."""
        import openai

        sampling: dict[str, Any] = {self._config.token_limit_parameter: self._config.max_tokens}
        if self._config.temperature is not None:
            sampling["temperature"] = self._config.temperature
        start = time.perf_counter()
        try:
            async with self._slots:
                response = await self._client.chat.completions.create(
                    model=self._model,
                    messages=cast("list[ChatCompletionMessageParam]", messages),
                    response_format=cast("ResponseFormatJSONSchema", response_format()),
                    **sampling,
                )
        except openai.APITimeoutError:
            timeout = f"timed out after {self._config.timeout_s} s"
            raise self._outcome(_Retry("timeout", timeout)) from None
        except openai.APIConnectionError as exc:
            raise self._outcome(_Retry("connection", f"connection failed: {exc}")) from None
        except openai.APIStatusError as exc:
            outcome = f"http_{exc.status_code}"
            text = f"HTTP {exc.status_code} from the endpoint: {str(exc.message)[:300]}"
            if exc.status_code in _RETRY_STATUS or exc.status_code >= 500:
                raise self._outcome(_Retry(outcome, text)) from None
            self._metrics.requests.labels(outcome).inc()
            raise DescribeFailed(text, 1) from None
        finally:
            self._metrics.request_seconds.observe(time.perf_counter() - start)
        used = Usage()
        if response.usage is not None:
            used = Usage(response.usage.prompt_tokens, response.usage.completion_tokens)
        self._metrics.add_usage(used)
        if not response.choices:
            raise self._outcome(_Retry("malformed", "malformed: the reply has no choices", used))
        choice = response.choices[0]
        if choice.finish_reason == "length":
            raise self._outcome(_Retry("truncated", "truncated: the reply hit max_tokens", used))
        refusal = getattr(choice.message, "refusal", None)
        if refusal:
            raise self._outcome(_Retry("refused", f"refused: {str(refusal)[:300]}", used))
        try:
            output = parse_reply(choice.message.content)
        except ReplyError as exc:
            raise self._outcome(_Retry(str(exc).split(":", 1)[0], str(exc), used)) from None
        self._metrics.requests.labels("ok").inc()
        return output, used

    def _outcome(self, exc: _Retry) -> _Retry:
        self._metrics.requests.labels(exc.outcome).inc()
        return exc


class _Retry(Exception):
    """An attempt that failed in a way another attempt may fix."""

    def __init__(self, outcome: str, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.usage = usage or Usage()
