"""What the describer's parts agree on: the result of a description and two protocols."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cloud.describe.context import DescribeContext
from cloud.describe.schema import TrafficDescription

RULES: str = "rules"
"""The ``describer`` label of descriptions made by rules from metadata (no model)."""


@dataclass(frozen=True)
class Usage:
    """Tokens an LLM reported (summed over a description's attempts)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True)
class Described:
    output: TrafficDescription
    describer: str  # the model name, or "rules"
    usage: Usage
    attempts: int  # requests made (1 for rules)
    images: tuple[int, ...]  # detection ids whose rebuilt crops were shown


class Describer(Protocol):
    """Turns a window's context (and rebuilt crops) into a :class:`TrafficDescription`."""

    @property
    def name(self) -> str: ...

    @property
    def wants_images(self) -> bool: ...

    async def describe(self, context: DescribeContext, images: Mapping[int, bytes]) -> Described:
        """Raises :class:`~cloud.describe.errors.DescribeFailed` when no description can be
        made; never returns an unvalidated output."""
        ...

    async def aclose(self) -> None: ...


class CropSource(Protocol):
    """Rebuilt crops (PNG bytes) of detections: :class:`cloud.decoder.service.DecodeService`."""

    async def png_for(self, detection_ids: Iterable[int]) -> dict[int, bytes]:
        """PNGs of those of ``detection_ids`` that can be rebuilt (others are left out)."""
        ...
