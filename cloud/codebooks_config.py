"""The cloud's ``codebooks`` configuration section: codebook files, and the auto-fitter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
        20_000,
        ge=512,
        description="At most this many embeddings (the newest) train and select a fit: faiss's "
        "k-means wants 39 x 256 = 9,984 points per sub-quantiser; 20,000 leave 2,000 held out. "
        "A 64-byte fit of 768-d vectors took 58 s and 0.5 GB at its peak on 20,000, 110 s and "
        "1.3 GB on 50,000 (one core).",
    )
    auto_fit_m: tuple[int, ...] = Field(
        (64, 32),
        description="Bytes per code (PQ sub-quantisers, 1-256) of the fitted codebooks: one "
        "codebook per size for each space (an int: one size). Each edge is offered the largest "
        "its `uplink.codebook_max_bytes` allows (64-byte codes keep more of f32's recall, "
        "32-byte ones fit a lean byte budget). Kept largest first.",
    )
    auto_fit_reduced_dim: int | None = Field(
        None,
        ge=1,
        description="Dimensions the PCA keeps (a multiple of every auto_fit_m); default: the "
        "best of m, 2m, 4m, 8m by held-out same-track recall@10 of whole held-out tracks, for "
        "each m.",
    )
    auto_fit_opq: bool = Field(
        False,
        description="Also try faiss's OPQ rotation after the PCA for every candidate "
        "projection. Off: on the shared clips it won by 0.001-0.006 of same-track recall, "
        "within the noise of one held-out split, and an OPQ training costs minutes of the "
        "cloud's CPU per candidate (semcom codec fit --opq tries it offline).",
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

    @field_validator("auto_fit_m", mode="before")
    @classmethod
    def _one_size(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        return value

    @field_validator("auto_fit_m")
    @classmethod
    def _sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("needs at least one code size in bytes, e.g. [64, 32]")
        bad = [m for m in value if not 1 <= m <= 256]
        if bad:
            raise ValueError(
                f"code sizes must be 1-256 bytes (PQ sub-quantisers of one byte), got {bad}"
            )
        twice = sorted({m for m in value if value.count(m) > 1})
        if twice:
            raise ValueError(f"code size {twice[0]} is listed twice; list each size once")
        return tuple(sorted(value, reverse=True))

    @model_validator(mode="after")
    def _reduced_dim_fits(self) -> CodebooksConfig:
        d = self.auto_fit_reduced_dim
        if d is not None:
            bad = [m for m in self.auto_fit_m if d % m]
            if bad:
                raise ValueError(
                    f"auto_fit_reduced_dim {d} is not a multiple of auto_fit_m {bad[0]}: "
                    "give a multiple of every code size, or leave it unset"
                )
        return self
