"""Decoder checkpoints: weights plus everything needed to use them correctly.

A checkpoint is one ``torch.save`` file (read back with ``weights_only=True``: no pickled code)
holding ``{"format", "version", "meta", "model", "optimizer"}``. ``meta`` records which
embeddings the decoder was trained on (encoder name, dim, random-init flag, codec id and hash),
the crops it rebuilds (side in px, the S crop scale, detector), the validation metrics, and the
training position (epoch, step) so ``--resume`` continues where it stopped. Loading a decoder
for other embeddings is :class:`DecoderMismatch`; an unreadable file :class:`CheckpointError`.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from cloud.decoder.errors import CheckpointError, CheckpointNotFound, DecoderMismatch
from cloud.store import space_name

if TYPE_CHECKING:
    from cloud.decoder.model import CropDecoder

logger = logging.getLogger(__name__)

FORMAT: Final = "semcom-decoder"
VERSION: Final = 1


@dataclass(frozen=True)
class DecoderMeta:
    """What a checkpoint says about its decoder (JSON-able)."""

    encoder: str
    embed_dim: int
    random_init: bool
    codec: str
    """Codec id the training embeddings went through (``int8``, ``f16``, ``pq32x8``, ...)."""
    codec_hash: str
    """Hex SHA-256 content hash of that codec."""
    code_bytes: int
    """Bytes one transmitted code takes (the JPEG comparison's budget)."""
    image_size: int
    crop_scale: float
    detector: str
    spec: dict[str, Any]
    dataset_key: str = ""
    codec_spec: str = ""
    """The codec as named for training (an id, or a codebook .npz path)."""
    detector_path: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    """The training dataset's metadata (sources, sampling, detector settings), so an
    evaluation can rebuild the same set and keep to its held-out objects."""
    val_fraction: float = 0.1
    split_seed: int = 0
    epoch: int = 0
    step: int = 0
    trained_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    software_version: str = ""

    @property
    def space(self) -> str:
        """The embedding space this decoder reads (the catalog's name for it)."""
        return space_name(self.encoder, self.embed_dim, self.random_init)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecoderMeta:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        weights = "RANDOM-INIT encoder" if self.random_init else "trained encoder"
        m = self.metrics
        quality = (
            f", val PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}"
            if "psnr" in m and "ssim" in m
            else ""
        )
        return (
            f"{self.image_size}px decoder for {self.encoder} ({self.embed_dim}-d, {weights}), "
            f"codec {self.codec} ({self.code_bytes} B), epoch {self.epoch}{quality}"
        )


def save_checkpoint(
    path: Path,
    meta: DecoderMeta,
    model_state: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """Write atomically (temporary file + rename): a crash never leaves half a checkpoint."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "meta": meta.to_dict(),
        "model": model_state,
        "optimizer": optimizer_state,
    }
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> tuple[DecoderMeta, dict[str, Any], dict[str, Any] | None]:
    """(meta, model state, optimizer state or None); typed errors for unusable files."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFound(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(path, f"not readable ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, f"not a {FORMAT} checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            path, f"format version {payload.get('version')!r}; this build reads {VERSION}"
        )
    try:
        meta = DecoderMeta.from_dict(dict(payload["meta"]))
        model = dict(payload["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"incomplete metadata ({exc})") from None
    optimizer = payload.get("optimizer")
    return meta, model, (dict(optimizer) if optimizer is not None else None)


def check_meta(
    meta: DecoderMeta,
    path: Path,
    *,
    encoder: str | None = None,
    embed_dim: int | None = None,
    random_init: bool | None = None,
    codec: str | None = None,
) -> None:
    """:class:`DecoderMismatch` unless ``meta`` matches every expectation given."""
    for name, expected, found in (
        ("encoder", encoder, meta.encoder),
        ("embedding dim", embed_dim, meta.embed_dim),
        ("random-init encoder", random_init, meta.random_init),
        ("codec", codec, meta.codec),
    ):
        if expected is not None and expected != found:
            raise DecoderMismatch(name, expected, found, path)


class LoadedDecoder:
    """A checkpoint's decoder ready to rebuild crops (eval mode, on ``device``).

    ``decode`` serialises calls with a lock: torch already uses every core for one batch.
    """

    def __init__(self, meta: DecoderMeta, model: CropDecoder, device: str, path: Path) -> None:
        self.meta = meta
        self.model = model
        self.device = device
        self.path = path
        self._lock = threading.Lock()

    @property
    def space(self) -> str:
        return self.meta.space

    def decode(self, vectors: NDArray[np.float32]) -> NDArray[np.uint8]:
        """(n, dim) embeddings -> (n, size, size, 3) RGB uint8 crops."""
        import torch

        x = np.asarray(vectors, np.float32)
        if x.ndim != 2 or x.shape[1] != self.meta.embed_dim:
            raise DecoderMismatch("embedding dim", x.shape[-1], self.meta.embed_dim, self.path)
        s = self.meta.image_size
        if len(x) == 0:
            return np.zeros((0, s, s, 3), np.uint8)
        with self._lock, torch.inference_mode():
            out = self.model(torch.from_numpy(x).to(self.device))
            pixels = (out.clamp(0, 1) * 255.0).round().to(torch.uint8)
            return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).cpu().numpy())


def load_decoder(
    path: Path,
    device: str = "cpu",
    *,
    encoder: str | None = None,
    embed_dim: int | None = None,
    random_init: bool | None = None,
    codec: str | None = None,
) -> LoadedDecoder:
    """The decoder in ``path``; expectations given are checked (:class:`DecoderMismatch`)."""
    from cloud.decoder.model import CropDecoder, DecoderSpec

    meta, state, _ = read_checkpoint(path)
    check_meta(
        meta, path, encoder=encoder, embed_dim=embed_dim, random_init=random_init, codec=codec
    )
    try:
        spec = DecoderSpec.from_dict(meta.spec)
        model = CropDecoder(spec)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            path, f"weights do not fit the recorded architecture ({exc})"
        ) from None
    if spec.embed_dim != meta.embed_dim or spec.image_size != meta.image_size:
        raise CheckpointError(path, "architecture and metadata disagree on dim or image size")
    model = model.eval().to(device)
    if meta.random_init:
        logger.warning("decoder %s was trained on RANDOM-INIT encoder embeddings", path)
    return LoadedDecoder(meta, model, device, Path(path))
