"""The open_clip (CLIP) encoder family, built one way for the edge and the cloud.

CLIP puts images and text in one space: the edge embeds crops with the IMAGE tower, the cloud
embeds search text with the TEXT tower of the same model (and uploaded images with the same
image tower), so a sentence finds crops. That only holds if both sides

- build the same model with the same weights: an open_clip architecture
  (``open_clip.list_models()``) with weights named by a pretrained tag (read from the local
  cache only: the Hugging Face cache, offline), a local checkpoint file, or random weights
  (development only) drawn under ``torch.manual_seed(RANDOM_INIT_SEED)`` in a forked RNG, so
  that every process that builds the same model gets the same weights;
- announce the same encoder name (:meth:`ClipSpec.encoder_name`): the cloud's space name is
  ``cloud.store.space_name(name, dim, random_init)``. Weights are named by their tag, or by the
  SHA-256 of the file when no tag is given, never by a path (the edge and the cloud keep their
  copies in different places);
- preprocess alike (:func:`clip_preprocess`): input side, mean, std and interpolation from the
  model's open_clip preprocess config (``open_clip.get_model_preprocess_cfg``; a tag's own
  values win). The edge's RoI crop already is the region to embed, so open_clip's
  resize-shortest-side and centre-crop steps are not applied (the timm path does the same);
- take the image embedding from the visual tower (``model.visual``, which is what
  ``CLIP.encode_image`` returns before normalising), checked once on a blank image.

torch and open_clip are imported inside the functions, never at import time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from shared.errors import (
    EncoderModelError,
    EncoderWeightsNotFound,
    EncoderWeightsUnreadable,
    UnknownOpenClipModel,
)
from shared.timm_encoder import HUB_CACHE, INTERPOLATIONS, RANDOM_INIT_SEED, Preprocess, hub_offline

logger = logging.getLogger(__name__)

#: the encoder type and the first part of every open_clip encoder name
OPEN_CLIP: Final = "open_clip"
#: characters of the weights file's SHA-256 kept in an encoder name
DIGEST_CHARS: Final = 16
_CHUNK: Final = 1 << 20


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ClipSpec:
    """Which open_clip model and which weights: what the edge and the cloud must agree on."""

    model: str
    #: an open_clip pretrained tag (``open_clip.list_pretrained_tags_by_model(model)``)
    pretrained: str | None = None
    #: a local checkpoint file (the tag's file, or one of its own when no tag is given)
    weights: Path | None = None
    #: random weights (seeded): development and tests only; ``pretrained`` and ``weights``
    #: are then ignored
    random_init: bool = False

    def encoder_name(self) -> str:
        """``open_clip:MODEL:TAG``, ``open_clip:MODEL:sha256-HEX`` (a file without a tag),
        or ``open_clip:MODEL`` for random weights (the space name adds ``-random-init``).

        Reads the weights file when it names the weights by their digest (about 1 s for
        600 MB); raises :class:`EncoderWeightsNotFound` when that file is not there.
        """
        if self.random_init:
            return f"{OPEN_CLIP}:{self.model}"
        if self.pretrained is not None:
            return f"{OPEN_CLIP}:{self.model}:{self.pretrained}"
        if self.weights is None:
            raise EncoderModelError(
                f"open_clip model {self.model}: no weights given (a pretrained tag, a weights "
                "file, or random_init for development)"
            )
        if not self.weights.is_file():
            raise EncoderWeightsNotFound(str(self.weights))
        return f"{OPEN_CLIP}:{self.model}:sha256-{file_digest(self.weights)[:DIGEST_CHARS]}"


def _check_model(name: str) -> dict[str, Any]:
    import open_clip

    config = open_clip.get_model_config(name)
    if config is None:
        raise UnknownOpenClipModel(name)
    return dict(config)


def embed_dim(name: str) -> int:
    """Width of the model's joint image-text space (both towers end there)."""
    return int(_check_model(name)["embed_dim"])


def _tag_config(spec: ClipSpec) -> dict[str, Any]:
    import open_clip

    if spec.pretrained is None:
        return {}
    config = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
    if not config:
        tags = open_clip.list_pretrained_tags_by_model(spec.model)
        raise EncoderModelError(
            f"open_clip model {spec.model} has no pretrained tag {spec.pretrained!r} "
            f"(its tags: {', '.join(tags) or 'none'})"
        )
    return dict(config)


def provisioned_file(model: str, pretrained: str) -> Path | None:
    """The file of the models-manifest entry for this architecture and tag, when it has been
    pulled or imported (hash-checked); None when no entry names them or none is provisioned."""
    from shared.models import ModelNotProvisioned, load_manifest, resolve

    for entry in load_manifest():
        if (entry.family, entry.library_id, entry.pretrained_tag) != (
            "open_clip",
            model,
            pretrained,
        ):
            continue
        try:
            return resolve(entry.name, entry.kind).path
        except ModelNotProvisioned:
            return None
    return None


def build_clip(spec: ClipSpec, device: str = "cpu") -> Any:
    """The whole open_clip model (both towers) in eval mode, from local weights only.

    Raises :class:`UnknownOpenClipModel`, :class:`EncoderModelError` (an unknown tag),
    :class:`EncoderWeightsNotFound` (no file, or the tag's weights not in the cache) and
    :class:`EncoderWeightsUnreadable` (a file that does not load into the model).
    """
    hub_offline()
    _check_model(spec.model)
    import open_clip
    import torch

    if spec.random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = open_clip.create_model(spec.model, pretrained=None, device=device)
        return model.eval()
    tag = _tag_config(spec)
    if spec.weights is None and spec.pretrained is not None:
        pulled = provisioned_file(spec.model, spec.pretrained)
        if pulled is not None:  # `semcom models pull` put it in the models directory
            spec = ClipSpec(spec.model, spec.pretrained, pulled)
    # A tag trained with QuickGELU (OpenAI's) needs it in the model too; open_clip only warns.
    options: dict[str, Any] = {"force_quick_gelu": bool(tag.get("quick_gelu", False))}
    if spec.weights is not None:
        if not spec.weights.is_file():
            raise EncoderWeightsNotFound(str(spec.weights))
        keys = ("mean", "std", "interpolation", "resize_mode")
        options["force_preprocess_cfg"] = {k: tag[k] for k in keys if k in tag}
        try:
            model = open_clip.create_model(
                spec.model, pretrained=str(spec.weights), device=device, **options
            )
        except Exception as exc:  # torch and open_clip raise many types for a bad file
            raise EncoderWeightsUnreadable(
                str(spec.weights),
                f"not {spec.model} weights ({type(exc).__name__}: {str(exc)[:300]})",
            ) from exc
        return model.eval()
    if spec.pretrained is None:
        raise EncoderModelError(
            f"open_clip model {spec.model}: no weights given (a pretrained tag, a weights file, "
            "or random_init for development)"
        )
    try:
        model = open_clip.create_model(
            spec.model, pretrained=spec.pretrained, device=device, **options
        )
    except Exception as exc:  # open_clip wraps the hub's errors in RuntimeError
        raise EncoderWeightsNotFound(
            HUB_CACHE,
            f"no {spec.model} weights for tag {spec.pretrained!r} there; on a connected "
            f'machine run `python -c "import open_clip; open_clip.create_model('
            f"'{spec.model}', pretrained='{spec.pretrained}')\"` and copy ~/.cache/huggingface "
            "here, or `semcom models pull` its manifest entry (`semcom models list`), or give "
            f"the checkpoint file as weights ({type(exc).__name__}: "
            f"{str(exc)[:200]})",
        ) from exc
    return model.eval()


def clip_preprocess(model: Any) -> Preprocess:
    """Square input side, mean, std and interpolation from the model's preprocess config."""
    import open_clip

    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    side = (size, size) if isinstance(size, int) else tuple(size)
    if len(side) != 2 or side[0] != side[1]:
        raise EncoderModelError(f"open_clip input size {size} is not square: not supported")
    interpolation = str(cfg.get("interpolation", "bicubic"))
    mean = [float(v) for v in cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))]
    std = [float(v) for v in cfg.get("std", (0.26862954, 0.26130258, 0.27577711))]
    return Preprocess(
        int(side[0]),
        (mean[0], mean[1], mean[2]),
        (std[0], std[1], std[2]),
        interpolation if interpolation in INTERPOLATIONS else "bicubic",
    )


def image_tower(model: Any, name: str, preprocess: Preprocess) -> tuple[Any, int]:
    """The visual tower and its output width, checked on one blank image: it must give one
    embedding of the joint space per image (CoCa's tower, for one, gives tokens too)."""
    import torch

    visual = model.visual
    dim = embed_dim(name)
    device = next(visual.parameters()).device
    with torch.inference_mode():
        out = visual(torch.zeros(1, 3, preprocess.size, preprocess.size, device=device))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, dim):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EncoderModelError(
            f"open_clip model {name}: its visual tower gives {shape}, not one {dim}-d "
            "embedding per image; use a CLIP-style model (ViT-*, RN*, convnext_*, ...)"
        )
    return visual, dim


def unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows scaled to unit length (cosine geometry); zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), np.float32)


def tokenizer(name: str) -> Any:
    """open_clip's tokenizer of the model (offline: a Hugging Face tokenizer must be cached)."""
    hub_offline()
    import open_clip

    try:
        return open_clip.get_tokenizer(name)
    except Exception as exc:  # a Hugging Face tokenizer that is not cached
        raise EncoderWeightsNotFound(
            HUB_CACHE, f"no tokenizer for {name} ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


def encode_texts(model: Any, tokenize: Any, texts: Sequence[str]) -> NDArray[np.float32]:
    """(n, dim) unit-norm text embeddings of the model's text tower."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        features = model.encode_text(tokenize(list(texts)).to(device))
    return unit(features.float().cpu().numpy())
