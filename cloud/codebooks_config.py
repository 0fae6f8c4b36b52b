"""The cloud's ``codebooks`` configuration section: codebook files, and the auto-fitter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CodebooksConfig(BaseModel):
    """Which PQ codebooks the cloud accepts, fits and offers to edges.

    A plain list (the form before the auto-fitter: ``codebooks: [a.npz, b.npz]``) is read as
    ``files``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    files: tuple[Path, ...] = Field(
        (),
        description="Codebook files (.npz, `semcom codec fit`) edges may use; the built-in "
        "f32/f16/int8 codecs, and every codebook the cloud fitted, are always accepted.",
    )
    auto_fit: bool = Field(
        True,
        description="Fit a PCA + PQ codebook (faiss) for an encoder space once the catalog "
        "holds auto_fit_min_vectors of its embeddings on universal rungs (f32/f16/int8), and "
        "push it to that space's edges. Runs on one replica (a lease).",
    )
    auto_fit_min_vectors: int = Field(
        4096,
        ge=512,
        description="Embeddings of one encoder space (encoder name + dim) needed before a fit.",
    )
    auto_fit_max_vectors: int = Field(
        50_000, ge=512, description="At most this many embeddings (the newest) train a fit."
    )
    auto_fit_m: int = Field(
        32, ge=1, le=256, description="Bytes per code (PQ sub-quantisers) of a fitted codebook."
    )
    auto_fit_reduced_dim: int | None = Field(
        None,
        ge=1,
        description="Dimensions the PCA keeps (a multiple of auto_fit_m); default: the best "
        "of m, 2m, 4m by held-out recall@10.",
    )
    auto_fit_period_s: float = Field(
        60.0, gt=0, description="How often the fitter checks the catalog, in seconds."
    )
    offer: Literal["fitted", "none"] = Field(
        "fitted",
        description="What edges are offered: `fitted`, the newest codebook fitted for their "
        "encoder space (they switch their embeddings to it); `none`: nothing is pushed.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            return {"files": list(data)}
        return data
