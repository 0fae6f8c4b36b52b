"""RoI embedding with the image tower of an open_clip (CLIP) model, in PyTorch.

The crops land in CLIP's joint image-text space, where the cloud's text tower of the same model
can find them by a sentence (``POST /v1/search {"text": ...}``). The model, its weights, its
preprocessing and the encoder name announced in the Hello are built as the cloud builds them
(:mod:`shared.open_clip_encoder`), so both name the same space. Only the image tower is kept:
the text tower is freed once the model is built. ONNX Runtime is not offered for these models
(the config refuses it).
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from edge.embed import torch_embed
from edge.encoder_config import OpenClipEncoderConfig
from edge.errors import EdgeError, ModelNotFound
from shared.errors import EncoderModelError, EncoderWeightsNotFound
from shared.open_clip_encoder import ClipSpec, build_clip, clip_preprocess, image_tower

logger = logging.getLogger(__name__)


def spec_of(config: OpenClipEncoderConfig) -> ClipSpec:
    return ClipSpec(config.model, config.pretrained, config.weights, config.random_init)


class OpenClipEncoder:
    """The image tower of an open_clip model (implements :class:`edge.embed.Encoder`)."""

    def __init__(self, config: OpenClipEncoderConfig) -> None:
        import torch

        spec = spec_of(config)
        torch.set_num_threads(config.threads)  # process-wide in torch: documented in the config
        try:
            self.name = spec.encoder_name()
            model = build_clip(spec, config.device)
            self.preprocess = clip_preprocess(model)
            self._visual, self.dim = image_tower(model, config.model, self.preprocess)
        except EncoderWeightsNotFound as exc:
            raise ModelNotFound(
                f"open_clip weights for {config.model}",
                exc.path,
                f"{exc.reason}. Give --encoder-weights PATH (the checkpoint file), or copy "
                "~/.cache/huggingface from a machine that downloaded the tag. Only for "
                "development, random_init runs untrained weights.",
            ) from exc
        except EncoderModelError as exc:
            raise EdgeError(str(exc)) from exc
        del model  # the text tower is not needed here
        self.random_init = config.random_init
        self.batch_size = config.batch_size
        self.runtime = "torch"
        self.execution = f"torch {config.device}"
        self._torch = torch
        self._device = torch.device(config.device)
        if self.random_init:
            logger.warning("encoder %s has RANDOM weights: embeddings carry no meaning", self.name)

    def embed(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(n, size, size, 3) RGB uint8 crops -> (n, dim) unit-norm float32 embeddings."""
        return torch_embed(self, self._visual, crops)
