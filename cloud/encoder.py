"""The query encoder: embeds an uploaded image in the edges' embedding space.

It must be the edges' model with the edges' preprocessing, or its vectors mean nothing next to
theirs; so the model is built from ``cloud.config.EncoderConfig`` exactly as the edge builds its
own (timm, ``num_classes=0``), the preprocessing contract (input size, mean, std,
interpolation) comes from timm's data config of that model, and vectors are L2-normalised. An
uploaded image is taken to be the object's crop: the whole image is resized to the model's
square input (timm's centre crop is not applied; the edge does not apply it either).

Random-init weights (tests, development) are drawn under ``torch.manual_seed(0)`` in a forked
RNG, so every process that builds the same model gets the same weights and a random-init edge
and cloud agree. The space name (``cloud.store.space_name``) carries ``-random-init`` so such
vectors never mix with trained ones.

torch and timm are imported when an encoder is built, never at import time.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from cloud.config import EncoderConfig
from cloud.store import space_name

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

_RESAMPLE: Final = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


class EncoderError(Exception):
    """The query encoder cannot be built (unknown model, unusable weights)."""


class WeightsNotFound(EncoderError):
    """The configured weights are not on this machine (the cloud never downloads them)."""


def _hub_offline() -> None:
    """Only the local Hugging Face cache, unless the operator set ``HF_HUB_OFFLINE=0``.

    huggingface_hub reads the variable when first imported, so an already imported module's
    constant is set as well.
    """
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None and value.strip().lower() in ("0", "false", "no", "off"):
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hub_constants
    except ImportError:  # timm without the hub: nothing to configure
        return
    hub_constants.HF_HUB_OFFLINE = True


def load_model(config: EncoderConfig) -> Any:
    """The timm model of ``config`` (eval mode not set), from local weights only."""
    _hub_offline()
    return _create_model(config)


def _create_model(config: EncoderConfig) -> Any:
    import timm
    import torch

    if config.name not in timm.list_models():
        raise EncoderError(f"unknown timm model {config.name!r} (cloud config `encoder.name`)")
    if config.random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return timm.create_model(config.name, pretrained=False, num_classes=0)
    kwargs: dict[str, Any] = {"pretrained": True, "num_classes": 0}
    if config.weights is not None:
        if not config.weights.is_file():
            raise WeightsNotFound(
                f"encoder weights {config.weights} for {config.name} do not exist "
                "(cloud config `encoder.weights`)"
            )
        kwargs["pretrained_cfg_overlay"] = {"file": str(config.weights)}
    try:
        return timm.create_model(config.name, **kwargs)
    except Exception as exc:  # timm and the hub raise many types for a missing file
        where = config.weights or "the local Hugging Face cache (HF_HUB_OFFLINE is on)"
        raise WeightsNotFound(
            f"cannot load weights of {config.name} from {where}: set `encoder.weights` to a "
            f".safetensors/.pth file, or copy ~/.cache/huggingface from a connected machine "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


class QueryEncoder:
    """A timm model that turns RGB images into unit-norm float32 vectors of one space.

    Calls are serialised by a lock: queries share the process's torch threads, and one query
    at a time keeps the ingest path responsive on a small machine.
    """

    def __init__(self, config: EncoderConfig) -> None:
        import timm

        model = load_model(config)
        data = timm.data.resolve_model_data_config(model)
        self.name = config.name
        self.random_init = config.random_init
        self.dim = int(model.num_features)
        self.size = int(data["input_size"][-1])
        self.mean = np.asarray(data["mean"], np.float32)
        self.std = np.asarray(data["std"], np.float32)
        interpolation = str(data.get("interpolation", "bicubic"))
        self.interpolation = interpolation if interpolation in _RESAMPLE else "bicubic"
        self._model = model.eval()
        self._lock = threading.Lock()
        if self.random_init:
            logger.warning("query encoder %s has RANDOM weights: search is meaningless", self.name)

    @property
    def space(self) -> str:
        """The embedding space this encoder's vectors belong to (as the edges name it)."""
        return space_name(self.name, self.dim, self.random_init)

    def preprocess(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """RGB images of any size -> (n, 3, size, size) normalised float32 (NCHW)."""
        from PIL import Image

        resample = Image.Resampling[self.interpolation.upper()]
        out = np.empty((len(images), self.size, self.size, 3), np.float32)
        for i, image in enumerate(images):
            rgb = image.convert("RGB").resize((self.size, self.size), resample)
            out[i] = np.asarray(rgb, np.float32) * (1.0 / 255.0)
        out -= self.mean
        out /= self.std
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """(n, dim) unit-norm vectors, one per image."""
        import torch

        if not images:
            return np.zeros((0, self.dim), np.float32)
        pixels = torch.from_numpy(self.preprocess(images))
        with self._lock, torch.inference_mode():
            features = self._model(pixels).float().numpy()
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return np.asarray(features / np.maximum(norms, 1e-12), np.float32)
