"""The warm-up before the cloud has a codebook: an edge sends on the universal int8 rung until
the cloud holds ``vectors_needed`` embeddings of its encoder space and fits one (the cloud's
``codebooks.auto_fit_min_vectors``, 4,096 by default), then switches. Reported apart from the
steady state so the cost of starting is not hidden.

One camera's figures: with several cameras of the same encoder the cloud gets there sooner
(``seconds`` divides by their number).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

WARMUP_VECTORS: Final = 4096
"""The cloud's default ``codebooks.auto_fit_min_vectors`` (embeddings of one encoder space)."""
WARMUP_RUNG: Final = "int8"


@dataclass(frozen=True)
class Warmup:
    """A preset's messages on the int8 rung, and how long one camera takes to feed the fit."""

    rung: str
    bytes_per_s: float
    embeddings_per_s: float
    vectors_needed: int
    seconds: float | None  # None when the preset sends no embeddings

    @property
    def bytes(self) -> float | None:
        return None if self.seconds is None else self.bytes_per_s * self.seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "rung": self.rung,
            "bytes_per_s": round(self.bytes_per_s, 2),
            "embeddings_per_s": round(self.embeddings_per_s, 4),
            "vectors_needed": self.vectors_needed,
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "bytes": None if self.bytes is None else round(self.bytes),
        }


def warmup_of(
    int8_sizes: Sequence[int], embeddings: int, duration_s: float, vectors_needed: int
) -> Warmup:
    """From the preset's message sizes with every embedding on int8, and its embedding count."""
    span = duration_s if duration_s > 0 else float("nan")
    rate = embeddings / span if duration_s > 0 else 0.0
    return Warmup(
        WARMUP_RUNG,
        sum(int8_sizes) / span if duration_s > 0 else 0.0,
        rate,
        vectors_needed,
        vectors_needed / rate if rate > 0 else None,
    )
