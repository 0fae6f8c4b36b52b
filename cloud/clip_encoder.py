"""The cloud's query encoders for an open_clip (CLIP) space: uploaded images and search text.

The edges' crops were embedded with the image tower of an open_clip model
(``edge.clip_encoder``). The cloud builds the same model with the same weights
(:mod:`shared.open_clip_encoder`) once, and keeps both towers:

- :class:`ClipImageEncoder` embeds an uploaded image as the edge embeds a crop (the whole
  image resized to the model's square input with its interpolation, then its mean and std),
  for ``POST /v1/search {"image": ...}``;
- :class:`cloud.text_encoder.ClipTextEncoder` embeds search text into the same space, for
  ``POST /v1/search {"text": ...}``.

Both name the space as the edges do (``cloud.store.space_name`` of the encoder name announced
in their Hello), and share one lock: one query at a time keeps the ingest path responsive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from cloud.config import OpenClipEncoderConfig, QueryEncoderConfig
from cloud.encoder import EncoderError, QueryEncoder, WeightsNotFound
from cloud.store import space_name
from cloud.text_encoder import ClipTextEncoder
from shared.errors import EncoderModelError, EncoderWeightsNotFound
from shared.open_clip_encoder import (
    ClipSpec,
    build_clip,
    clip_preprocess,
    image_tower,
    tokenizer,
    unit,
)
from shared.timm_encoder import Preprocess

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)


class ClipImageEncoder:
    """RGB images -> unit-norm float32 vectors, with the edges' open_clip image tower."""

    def __init__(
        self,
        visual: Any,
        preprocess: Preprocess,
        name: str,
        dim: int,
        random_init: bool,
        lock: threading.Lock,
    ) -> None:
        self.name = name
        self.dim = dim
        self.random_init = random_init
        self.preprocess = preprocess
        self._visual = visual
        self._lock = lock

    @property
    def space(self) -> str:
        """The embedding space this encoder's vectors belong to (as the edges name it)."""
        return space_name(self.name, self.dim, self.random_init)

    def pixels(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """RGB images of any size -> (n, 3, size, size) normalised float32 (NCHW)."""
        from PIL import Image

        size = self.preprocess.size
        resample = Image.Resampling[self.preprocess.interpolation.upper()]
        crops = np.stack(
            [np.asarray(i.convert("RGB").resize((size, size), resample)) for i in images]
        )
        return self.preprocess.apply(crops)

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """(n, dim) unit-norm vectors, one per image."""
        import torch

        if not images:
            return np.zeros((0, self.dim), np.float32)
        x = torch.from_numpy(self.pixels(images))
        with self._lock, torch.inference_mode():
            features = self._visual(x).float().numpy()
        return unit(features)


def open_clip_encoders(config: OpenClipEncoderConfig) -> tuple[ClipImageEncoder, ClipTextEncoder]:
    """Both towers of the configured model, built once; errors name the config key to fix."""
    spec = ClipSpec(config.model, config.pretrained, config.weights, config.random_init)
    try:
        name = spec.encoder_name()
        model = build_clip(spec)
        preprocess = clip_preprocess(model)
        visual, dim = image_tower(model, config.model, preprocess)
        tokenize = tokenizer(config.model)
    except EncoderWeightsNotFound as exc:
        raise WeightsNotFound(
            f"open_clip weights of {config.model} not found at {exc.path}: {exc.reason} "
            "(cloud config `encoder.weights` / `encoder.pretrained`)"
        ) from exc
    except EncoderModelError as exc:
        raise EncoderError(f"{exc} (cloud config `encoder`)") from exc
    lock = threading.Lock()
    if config.random_init:
        logger.warning("query encoder %s has RANDOM weights: search is meaningless", name)
    return (
        ClipImageEncoder(visual, preprocess, name, dim, config.random_init, lock),
        ClipTextEncoder(model, tokenize, name, dim, config.random_init, lock),
    )


def query_encoders(
    config: QueryEncoderConfig | None,
) -> tuple[QueryEncoder | ClipImageEncoder | None, ClipTextEncoder | None]:
    """The query encoders the cloud config's ``encoder`` names (takes seconds): a timm model
    embeds images only; an open_clip model embeds images and text (one model, both towers)."""
    if config is None:
        return None, None
    if isinstance(config, OpenClipEncoderConfig):
        return open_clip_encoders(config)
    return QueryEncoder(config), None
