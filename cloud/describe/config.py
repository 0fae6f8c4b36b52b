"""The ``describer`` section of the cloud configuration.

With no ``base_url`` the rule-based describer is used (labelled ``rules`` in every stored
description); with one, any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama,
llama.cpp server) that accepts images and ``response_format`` JSON schemas. The API key can
come from the environment (``SEMCOM_CLOUD__DESCRIBER__API_KEY``) instead of the file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class DescriberConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True, description="Run the describer worker (scheduler and jobs) inside the service."
    )
    base_url: str | None = Field(
        None,
        description="OpenAI-compatible API base URL, e.g. https://api.openai.com/v1 or "
        "http://localhost:11434/v1 (Ollama); none: the rule-based describer.",
    )
    model: str | None = Field(
        None, description="Model name at that endpoint (needs image input); required with it."
    )
    api_key: SecretStr | None = Field(
        None,
        description="API key of the endpoint (local servers take any); also "
        "SEMCOM_CLOUD__DESCRIBER__API_KEY.",
    )
    timeout_s: float = Field(60.0, gt=0, description="Timeout of one LLM request (s).")
    max_attempts: int = Field(
        4,
        ge=1,
        le=20,
        description="LLM requests per job run: timeouts, HTTP errors, malformed JSON and "
        "schema violations are retried with exponential backoff.",
    )
    backoff_s: float = Field(
        1.0, ge=0, description="First retry delay (s); doubles per attempt, capped at 60 s."
    )
    concurrency: int = Field(
        2, ge=1, le=64, description="Jobs run at once, and LLM requests in flight at most."
    )
    max_tokens: int = Field(
        1024, ge=64, le=32_768, description="Completion tokens allowed per LLM reply."
    )
    token_limit_parameter: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens",
        description="Request field that carries max_tokens: most OpenAI-compatible servers "
        "(vLLM, llama.cpp, Ollama) read max_tokens; OpenAI's reasoning models accept only "
        "max_completion_tokens.",
    )
    temperature: float | None = Field(
        0.0,
        ge=0,
        le=2,
        description="Sampling temperature (0: the most repeatable descriptions); null: not sent, "
        "for models that refuse the parameter (OpenAI's reasoning models).",
    )
    window_s: float = Field(
        60.0,
        gt=0,
        description="Length of a described time window (s); windows are aligned "
        "to multiples of it since the Unix epoch.",
    )
    settle_s: float = Field(
        10.0,
        ge=0,
        description="A window is closed (described) once the camera's data reaches this long "
        "past its end (capture time): late boxes get time to arrive.",
    )
    idle_close_s: float = Field(
        300.0,
        gt=0,
        description="A silent camera's last window is closed this long after its end by the "
        "wall clock (s).",
    )
    backfill_s: float = Field(
        3600.0,
        ge=0,
        description="On start, windows this far back from the newest data are "
        "scheduled (jobs already made are not repeated).",
    )
    max_images: int = Field(
        8, ge=0, le=64, description="Rebuilt crops sent per request (one per track first)."
    )
    max_detections: int = Field(
        5000, ge=10, description="Detections of a window read for its context at most."
    )
    stopped_after_s: float = Field(
        30.0,
        gt=0,
        description="A vehicle whose box centre stays within stopped_max_move for this long "
        "is a stopped vehicle (an incident and a notable event).",
    )
    stopped_max_move: float = Field(
        0.02,
        gt=0,
        le=1,
        description="Largest centre movement of a stopped vehicle, in image widths.",
    )
    events: bool = Field(
        True,
        description="Also describe on notable events: a class a camera has not shown before, "
        "a stopped vehicle.",
    )
    poll_s: float = Field(
        5.0, gt=0, description="How often the scheduler looks for closed windows and events."
    )
    job_max_attempts: int = Field(
        3, ge=1, le=100, description="Runs of a job before it is recorded as failed."
    )
    job_retry_s: float = Field(
        60.0, ge=0, description="Delay before a failed job runs again (s); doubles per run."
    )
    job_lease_s: float = Field(
        900.0,
        gt=0,
        description="A job running longer than this is presumed lost (its process died) and "
        "queued again. On SQLite (one process) every running job is requeued at start.",
    )

    @model_validator(mode="after")
    def _model_with_endpoint(self) -> DescriberConfig:
        if self.base_url is not None and not self.model:
            raise ValueError("describer.model is required with describer.base_url")
        return self

    @property
    def uses_llm(self) -> bool:
        return self.base_url is not None
