"""The query encoder: embeds an uploaded image in the edges' embedding space.

It must be the edges' model with the edges' preprocessing, or its vectors mean nothing next to
theirs; so the model is built from ``cloud.config.EncoderConfig`` by the same code as the edge's
(:mod:`shared.timm_encoder`: timm, ``num_classes=0``, the same ``model_kwargs`` and weights),
the preprocessing contract (input size, mean, std, interpolation) comes from timm's data config
of that model with the configured overrides, and vectors are L2-normalised. An
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
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from cloud.config import EncoderConfig
from cloud.store import space_name
from shared import timm_encoder
from shared.errors import EncoderModelError, EncoderWeightsNotFound, UnknownEncoderModel
from shared.models.errors import ModelError
from shared.timm_encoder import Preprocess

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)


class EncoderError(Exception):
    """The query encoder cannot be built (unknown model, unusable weights)."""


class WeightsNotFound(EncoderError):
    """The configured weights are not on this machine (the cloud never downloads them)."""


def resolve_model_name(config: EncoderConfig) -> EncoderConfig:
    """A config naming a models-manifest entry (``encoder.name: mobilenetv2``) as the timm
    model it stands for, exactly as the edge resolves it (``edge.embed.resolve_model_name``):
    the entry's timm id, provisioned weights, ``model_kwargs`` and preprocessing, each
    overridden by the config's own values. Other configs unchanged."""
    try:
        return timm_encoder.with_manifest(config)
    except ModelError as exc:
        raise WeightsNotFound(f"{exc} (cloud config `encoder.name`)") from exc
    except EncoderModelError as exc:
        raise EncoderError(f"{exc} (cloud config `encoder.name`)") from exc


def load_model(config: EncoderConfig) -> Any:
    """The timm model of ``config`` (eval mode not set), from local weights only, built by
    :func:`shared.timm_encoder.build_model` exactly as the edges build theirs."""
    config = resolve_model_name(config)
    try:
        return timm_encoder.build_model(
            config.name,
            weights=config.weights,
            random_init=config.random_init,
            model_kwargs=config.model_kwargs,
        )
    except UnknownEncoderModel as exc:
        raise EncoderError(f"{exc} (cloud config `encoder.name`)") from exc
    except EncoderWeightsNotFound as exc:
        if exc.path == timm_encoder.HUB_CACHE:
            raise WeightsNotFound(
                f"cannot load weights of {config.name} from {exc.path}: set `encoder.weights` "
                f"to a .safetensors/.pth file, or copy ~/.cache/huggingface from a connected "
                f"machine ({exc.reason})"
            ) from exc
        raise WeightsNotFound(
            f"encoder weights {exc.path} for {config.name} do not exist "
            "(cloud config `encoder.weights`)"
        ) from exc
    except EncoderModelError as exc:
        raise EncoderError(f"{exc} (cloud config `encoder`)") from exc


def load_preprocess(model: Any, config: EncoderConfig) -> Preprocess:
    """The edges' preprocessing of ``model``: its timm data config with ``config``'s overrides."""
    config = resolve_model_name(config)
    return timm_encoder.resolve_preprocess(model, **config.preprocess.model_dump(exclude_none=True))


class QueryEncoder:
    """A timm model that turns RGB images into unit-norm float32 vectors of one space.

    Calls are serialised by a lock: queries share the process's torch threads, and one query
    at a time keeps the ingest path responsive on a small machine.
    """

    def __init__(self, config: EncoderConfig) -> None:
        config = resolve_model_name(config)  # its space is the timm id's, as the edge's
        model = load_model(config)
        contract = load_preprocess(model, config)
        self.name = config.name
        self.random_init = config.random_init
        self.dim = int(model.num_features)
        self.size = contract.size
        self.mean = np.asarray(contract.mean, np.float32)
        self.std = np.asarray(contract.std, np.float32)
        self.interpolation = contract.interpolation
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
