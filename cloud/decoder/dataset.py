"""The decoder's training data: (crop, embedding) pairs as the cloud would receive them.

One ``.npz`` file (uncompressed: loading is a memory copy) holds ``crops`` (n, S, S, 3) RGB
uint8 at the decoder's side S, ``embeddings`` (n, dim) float32 (already through the codec: what
the cloud decodes, quantisation noise included), ``groups`` (n,) int64 (one id per tracked
object, so held-out crops are of objects never seen in training), ``classes`` (n,) and a JSON
``meta`` string. The file is built by ``semcom.decoder_data`` with the edge's own detector,
crop rule and encoder; the cloud only reads it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloud.decoder.errors import DatasetError


@dataclass(frozen=True)
class DatasetMeta:
    encoder: str
    embed_dim: int
    random_init: bool
    codec: str
    codec_hash: str
    code_bytes: int
    image_size: int
    crop_scale: float
    detector: str
    key: str = ""
    """Content key of what the set was built from (sources, models, settings)."""
    sources: list[str] = field(default_factory=list)
    frames: int = 0
    runtime: str = ""
    """Encoder runtime that made the embeddings (torch, onnx, onnx-int8)."""
    codec_spec: str = ""
    """How the codec was named when built (an id, or a codebook path)."""
    detector_path: str = ""
    detector_imgsz: int | None = None
    sample_fps: float | None = None
    """Frames per second taken from videos (None: every frame)."""
    max_crops: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CropDataset:
    crops: NDArray[np.uint8]
    embeddings: NDArray[np.float32]
    groups: NDArray[np.int64]
    classes: NDArray[np.int64]
    meta: DatasetMeta

    def __post_init__(self) -> None:
        n = len(self.crops)
        s = self.meta.image_size
        if self.crops.shape[1:] != (s, s, 3) or self.crops.dtype != np.uint8:
            raise ValueError(f"crops must be (n, {s}, {s}, 3) uint8, got {self.crops.shape}")
        if self.embeddings.shape != (n, self.meta.embed_dim):
            raise ValueError(
                f"embeddings must be ({n}, {self.meta.embed_dim}), got {self.embeddings.shape}"
            )
        if self.groups.shape != (n,) or self.classes.shape != (n,):
            raise ValueError("groups and classes need one entry per crop")

    def __len__(self) -> int:
        return len(self.crops)

    def split(self, val_fraction: float, seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(train, validation) indices; whole groups (objects) go to one side.

        Neighbouring frames of one track are nearly the same crop: splitting crop by crop would
        validate on copies of training images. With a single group, crops are split instead.
        """
        ids = np.unique(self.groups)
        rng = np.random.default_rng(seed)
        if len(ids) >= 2:
            held = rng.permutation(ids)[: max(1, round(len(ids) * val_fraction))]
            is_val = np.isin(self.groups, held)
        else:
            order = rng.permutation(len(self))
            is_val = np.zeros(len(self), bool)
            is_val[order[: max(1, round(len(self) * val_fraction))]] = True
        every = np.arange(len(self), dtype=np.int64)
        return every[~is_val], every[is_val]

    def save(self, path: Path) -> None:
        """Write atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            crops=self.crops,
            embeddings=self.embeddings,
            groups=self.groups,
            classes=self.classes,
            meta=np.array(json.dumps(self.meta.to_dict())),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> CropDataset:
        if not path.is_file():
            raise DatasetError(path, "no such file")
        try:
            # our own handle: np.load leaks it when the zip is damaged
            with path.open("rb") as fh, np.load(fh, allow_pickle=False) as data:
                meta = DatasetMeta(**json.loads(str(data["meta"])))
                return cls(
                    np.asarray(data["crops"], np.uint8),
                    np.asarray(data["embeddings"], np.float32),
                    np.asarray(data["groups"], np.int64),
                    np.asarray(data["classes"], np.int64),
                    meta,
                )
        except DatasetError:
            raise
        except Exception as exc:  # zip, JSON and shape errors of a damaged file
            raise DatasetError(path, f"unreadable ({type(exc).__name__}: {exc})") from None
