"""The ``decoder`` section of the cloud configuration (``cloud.config.CloudConfig.decoder``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class DecoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: Path = Field(
        description="Decoder checkpoint (`semcom cloud train-decoder --out DIR` writes "
        "DIR/best.pt); it must match the edges' encoder and embedding dim."
    )
    device: str = Field("cpu", description="torch device: 'cpu', 'cuda', 'cuda:1', ...")
    cache_size: int = Field(
        1024, ge=0, description="Rebuilt crops (PNG bytes) kept in memory, least recently used out."
    )
    batch_wait_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="Wait this long (ms) for more requests to decode in the same forward pass.",
    )
    max_batch: int = Field(32, ge=1, le=1024, description="Crops decoded per forward pass.")
