"""Training losses of the crop decoder: pixels, structure, and embedding consistency.

- pixel: L1 and/or MSE between the rebuilt and the original crop (both in [0, 1]);
- SSIM: ``1 - SSIM`` (torchmetrics, Gaussian window, data range 1);
- consistency: the rebuilt crop is re-encoded by the FROZEN encoder the edges use (timm model,
  preprocessing from its data config: resized to its input side, normalised with its mean/std,
  all differentiable) and ``1 - cosine`` to the input embedding is added. The paper trained with
  MSE + LPIPS; this term needs no downloaded perceptual network, only the encoder itself.

The consistency term costs a forward and backward pass of a ViT at 224 px per sample: measured
1.7 s for 4 crops with ViT-B on two idle CPU cores, against about 0.4 s for a whole 32-crop
decoder step at 64 px. So it runs every ``consistency_every`` steps on ``consistency_samples``
crops (:func:`default_weights`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

logger = logging.getLogger(__name__)

_MODES = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    mse: float = 0.0
    ssim: float = 0.5
    consistency: float = 0.2
    consistency_every: int = 1
    """Apply the consistency term every k-th step (0: never)."""
    consistency_samples: int = 0
    """Crops re-encoded per consistency step (0: the whole batch)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_weights(device: str) -> LossWeights:
    """Sensible defaults: on a GPU the consistency term runs every step on the whole batch;
    on a CPU every 10th step on 4 crops: about +40 % training time with ViT-B on two cores,
    where re-encoding every whole batch would make training some 35 times slower."""
    if device.startswith("cuda"):
        return LossWeights(consistency_every=1, consistency_samples=0)
    return LossWeights(consistency_every=10, consistency_samples=4)


class FrozenEncoder(nn.Module):  # type: ignore[misc]  # torch is untyped here (Any)
    """The edges' encoder with differentiable preprocessing; its weights never change.

    Built like the cloud's query encoder (``cloud.encoder``): same timm model, same seeded
    random-init weights, so the embedding of a rebuilt crop lives in the edges' space.
    """

    def __init__(
        self,
        name: str,
        weights: Path | None = None,
        random_init: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        preprocess: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from cloud.config import EncoderConfig
        from cloud.encoder import load_model, load_preprocess

        config = EncoderConfig(
            name=name,
            weights=weights,
            random_init=random_init,
            model_kwargs=dict(model_kwargs or {}),
            preprocess=dict(preprocess or {}),
        )
        model = load_model(config)
        data = load_preprocess(model, config)
        self.name = name
        self.random_init = random_init
        self.dim = int(model.num_features)
        self.size = data.size
        self.mode = data.interpolation if data.interpolation in _MODES else "bilinear"
        self.register_buffer("mean", torch.tensor(data.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(data.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenEncoder:
        super().train(False)  # dropout / norm statistics stay as the edges run them
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, h, w) RGB in [0, 1] -> (n, dim) unit vectors."""
        x = images
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            kwargs = {} if self.mode == "nearest" else {"align_corners": False}
            x = F.interpolate(x, size=(self.size, self.size), mode=self.mode, **kwargs)
            x = x.clamp(0.0, 1.0)  # bicubic overshoots
        x = (x - self.mean) / self.std
        return F.normalize(self.model(x).float(), dim=1)


def ssim(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two (n, 3, h, w) batches in [0, 1]."""
    value = structural_similarity_index_measure(preds, target, data_range=1.0)
    assert isinstance(value, torch.Tensor)
    return value


class ReconstructionLoss:
    """The weighted sum of the terms above; returns it with each term's value (floats)."""

    def __init__(self, weights: LossWeights, encoder: FrozenEncoder | None = None) -> None:
        if weights.consistency > 0 and weights.consistency_every > 0 and encoder is None:
            raise ValueError("the consistency term needs the frozen encoder")
        self.weights = weights
        self.encoder = encoder

    def consistency_due(self, step: int) -> bool:
        w = self.weights
        return w.consistency > 0 and w.consistency_every > 0 and step % w.consistency_every == 0

    def __call__(
        self,
        rebuilt: torch.Tensor,
        target: torch.Tensor,
        embeddings: torch.Tensor,
        step: int,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.weights
        total = torch.zeros((), device=rebuilt.device)
        parts: dict[str, float] = {}
        if w.l1 > 0:
            l1 = F.l1_loss(rebuilt, target)
            total = total + w.l1 * l1
            parts["l1"] = float(l1.detach())
        if w.mse > 0:
            mse = F.mse_loss(rebuilt, target)
            total = total + w.mse * mse
            parts["mse"] = float(mse.detach())
        if w.ssim > 0:
            s = ssim(rebuilt, target)
            total = total + w.ssim * (1.0 - s)
            parts["ssim"] = float(s.detach())
        if self.consistency_due(step):
            assert self.encoder is not None
            n = w.consistency_samples or len(rebuilt)
            again = self.encoder(rebuilt[:n])
            cos = (again * F.normalize(embeddings[:n].float(), dim=1)).sum(1).mean()
            total = total + w.consistency * (1.0 - cos)
            parts["cosine"] = float(cos.detach())
        return total, parts
