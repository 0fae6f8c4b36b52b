"""The timm image encoder, built one way for the edge and the cloud.

The cloud's query encoder (and the decoder's consistency loss) must embed an image exactly as
the edges do, so both sides build the model here:

- a timm model name plus ``model_kwargs``, typed scalars passed to ``timm.create_model`` (for
  example ``pad_type="same"``, which TensorFlow-ported weights need);
- always headless (``num_classes=0``): the pooled features are the embedding;
- weights from a local file (a state dict, .safetensors or .pth/.bin read with
  ``weights_only=True``): the classifier's keys are dropped (the model has no classifier),
  every other key must fit exactly, or one error lists what is missing, unexpected or of the
  wrong shape; else from the local Hugging Face cache; else random (development only), drawn
  under ``torch.manual_seed(RANDOM_INIT_SEED)`` in a forked RNG, so that every process that
  builds the same model gets the same weights;
- preprocessing (square input side, mean, std, interpolation) from the model's timm data
  config, each value overridable (the weights may have been trained with other values than
  timm's default for that architecture).

torch, timm and safetensors are imported inside the functions, never at import time.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, Union

import numpy as np
from numpy.typing import NDArray

from shared.errors import (
    EncoderModelError,
    EncoderWeightsMismatch,
    EncoderWeightsNotFound,
    EncoderWeightsUnreadable,
    UnknownEncoderModel,
)

logger = logging.getLogger(__name__)

#: a ``model_kwargs`` value: what a YAML scalar or a ``KEY=VALUE`` flag can hold
ModelKwargValue = Union[bool, int, float, str]  # noqa: UP007  (a runtime alias on Python 3.10)
#: the seed of random-init weights; the edge and the cloud must use the same one
RANDOM_INIT_SEED: Final = 0
#: ``timm.create_model`` arguments semcom sets itself (a model_kwargs entry may not)
RESERVED_KWARGS: Final = frozenset(
    {
        "model_name",
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "checkpoint_path",
        "num_classes",
        "features_only",
    }
)
#: interpolations that both the edge (OpenCV) and the cloud (PIL) apply alike
INTERPOLATIONS: Final = ("nearest", "bilinear", "bicubic")
#: where the Hugging Face cache is, in error messages
HUB_CACHE: Final = "the local Hugging Face cache (HF_HUB_OFFLINE is on)"

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


@dataclass(frozen=True)
class Preprocess:
    """What the encoder expects: square input side (px), per-channel mean and std (0-1 scale),
    and the interpolation used to resize a crop to that side."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str

    def apply(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(n, size, size, 3) RGB uint8 -> (n, 3, size, size) normalised float32."""
        x = crops.astype(np.float32) * (1.0 / 255.0)
        x -= np.asarray(self.mean, np.float32)
        x /= np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }


def parse_scalar(text: str) -> ModelKwargValue:
    """``"true"`` -> True, ``"3"`` -> 3, ``"0.5"`` -> 0.5, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.fullmatch(text.strip()):
        return int(text)
    if _FLOAT.fullmatch(text.strip()):
        return float(text)
    return text


def parse_key_values(items: Iterable[str], what: str = "--model-kwargs") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a malformed item is a ValueError."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def parse_model_kwargs(items: Iterable[str]) -> dict[str, ModelKwargValue]:
    """``--model-kwargs KEY=VALUE`` items, values typed as :func:`parse_scalar` says."""
    return check_model_kwargs(
        {k: parse_scalar(v) for k, v in parse_key_values(items, "--model-kwargs").items()}
    )


def check_model_kwargs(kwargs: Mapping[str, Any]) -> dict[str, ModelKwargValue]:
    """The kwargs if every key is free and every value a scalar; else a ValueError naming it."""
    for key, value in kwargs.items():
        if key in RESERVED_KWARGS:
            raise ValueError(
                f"model_kwargs may not set {key!r}: semcom sets it (the encoder is headless, "
                "num_classes=0, and its weights come from --encoder-weights)"
            )
        if not isinstance(value, (bool, int, float, str)):
            raise ValueError(
                f"model_kwargs[{key!r}] must be a bool, int, float or string, got "
                f"{type(value).__name__}"
            )
    return dict(kwargs)


def hub_offline() -> None:
    """Only the local Hugging Face cache, unless the user set ``HF_HUB_OFFLINE=0``.

    huggingface_hub reads the variable when it is first imported, so the already imported
    module's constant is set as well.
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


def build_model(
    name: str,
    *,
    weights: Path | None = None,
    random_init: bool = False,
    model_kwargs: Mapping[str, ModelKwargValue] | None = None,
) -> Any:
    """The headless timm model (eval mode not set); see the module's docstring for weights.

    Raises :class:`~shared.errors.UnknownEncoderModel`, :class:`EncoderWeightsNotFound` (a
    missing file, or no weights in the Hugging Face cache), :class:`EncoderWeightsUnreadable`
    and :class:`EncoderWeightsMismatch`.
    """
    hub_offline()
    import timm
    import torch

    if not timm.is_model(name):
        raise UnknownEncoderModel(name)
    kwargs: dict[str, Any] = {**check_model_kwargs(model_kwargs or {}), "num_classes": 0}
    if random_init:
        # Seeded: every process (edge or cloud) gets the same weights, so random-init
        # embeddings of one model are at least comparable.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            return timm.create_model(name, pretrained=False, **kwargs)
    if weights is not None:
        state = read_state_dict(weights)  # before building: a bad file fails fast
        model = timm.create_model(name, pretrained=False, **kwargs)
        load_weights(model, state, path=weights, name=name)
        return model
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # timm and the hub raise many types for a missing file
        raise EncoderWeightsNotFound(
            HUB_CACHE, f"no weights for {name} there ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file, or of a .pth/.bin checkpoint (``weights_only``),
    unwrapped from a ``state_dict``/``model`` entry and without ``module.`` prefixes."""
    if not Path(path).is_file():
        raise EncoderWeightsNotFound(str(path))
    try:
        if Path(path).suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise many types for a bad file
        raise EncoderWeightsUnreadable(
            str(path), f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state:
        raise EncoderWeightsUnreadable(str(path), "it holds no state dict (name -> tensor)")
    prefix = "module."
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def _classifier_names(model: Any) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ("head", "classifier", "fc")
    return (names,) if isinstance(names, str) else tuple(names)


def load_weights(model: Any, state: Mapping[str, Any], *, path: Path, name: str) -> None:
    """Load ``state`` into the headless ``model``: classifier keys the model lacks are dropped,
    every other key must be there with its shape (one precise error otherwise)."""
    own = model.state_dict()
    heads = _classifier_names(model)
    dropped = [
        k for k in state if k not in own and any(k == h or k.startswith(h + ".") for h in heads)
    ]
    kept = {k: v for k, v in state.items() if k not in dropped}
    missing = [k for k in own if k not in kept]
    unexpected = [k for k in kept if k not in own]
    wrong = [
        (k, tuple(kept[k].shape), tuple(own[k].shape))
        for k in kept
        if k in own and tuple(kept[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        raise EncoderWeightsMismatch(str(path), name, missing, unexpected, wrong)
    model.load_state_dict(kept, strict=True)
    if dropped:
        logger.info(
            "encoder %s: weights from %s (%d classifier tensors dropped: the encoder is headless)",
            name,
            path,
            len(dropped),
        )


def resolve_preprocess(
    model: Any,
    *,
    size: int | None = None,
    mean: Iterable[float] | None = None,
    std: Iterable[float] | None = None,
    interpolation: str | None = None,
) -> Preprocess:
    """The model's timm data config, with each given value in its place."""
    import timm

    cfg = timm.data.resolve_model_data_config(model)
    interp = interpolation or str(cfg.get("interpolation", "bicubic"))
    return Preprocess(
        int(size if size is not None else cfg["input_size"][-1]),
        _triple(mean if mean is not None else cfg["mean"]),
        _triple(std if std is not None else cfg["std"]),
        interp if interp in INTERPOLATIONS else "bicubic",
    )


def _triple(values: Iterable[float]) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


@dataclass(frozen=True)
class ManifestEncoder:
    """A timm encoder named in the models manifest, resolved to what :func:`build_model` takes.

    ``model`` is the timm model id (the entry's ``library_id``); ``weights`` the provisioned
    file (the user's own file when one was given, None for random init); ``model_kwargs`` and
    ``preprocess`` the entry's, each overridden by the user's values.
    """

    model: str
    weights: Path | None
    model_kwargs: dict[str, ModelKwargValue]
    preprocess: dict[str, Any]


def manifest_encoder(
    name: str,
    *,
    weights: Path | None,
    random_init: bool,
    model_kwargs: Mapping[str, ModelKwargValue],
    preprocess: Mapping[str, Any],
) -> ManifestEncoder | None:
    """``name`` resolved through the models manifest; None when it is not a manifest name.

    Never downloads: an entry not provisioned raises
    :class:`~shared.models.errors.ModelNotProvisioned` (its message says which
    ``semcom models pull``/``import`` to run); a tampered file raises ``ModelHashMismatch``.
    A manifest name of another kind or library raises :class:`EncoderModelError`.
    """
    from shared.models import is_model_name, load_manifest, resolve

    if not is_model_name(name):
        return None
    entry = load_manifest().get(name)
    assert entry is not None
    if entry.kind != "encoder" or entry.family != "timm":
        raise EncoderModelError(
            f"{name!r} is a {entry.family} {entry.kind} in the models manifest, not a timm "
            "encoder (an open_clip model is `--encoder open_clip:ARCH[:TAG]`)"
        )
    path = weights
    if path is None and not random_init:
        path = resolve(name, "encoder").path
    pre: dict[str, Any] = {}
    if entry.preprocessing is not None:
        p = entry.preprocessing
        pre = {"size": p.input_size[0], "mean": p.mean, "std": p.std}
        if p.interpolation in INTERPOLATIONS:
            pre["interpolation"] = p.interpolation
    pre.update({k: v for k, v in preprocess.items() if v is not None})
    kwargs = check_model_kwargs({**entry.model_kwargs, **model_kwargs})
    return ManifestEncoder(entry.library_id, path, kwargs, pre)


class EncoderFields(Protocol):
    """What :func:`with_manifest` reads of an encoder config (the edge's and the cloud's)."""

    @property
    def name(self) -> str: ...
    @property
    def weights(self) -> Path | None: ...
    @property
    def random_init(self) -> bool: ...
    @property
    def model_kwargs(self) -> Mapping[str, ModelKwargValue]: ...
    @property
    def preprocess(self) -> Any: ...  # a pydantic model with model_dump()
    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any: ...


C = TypeVar("C", bound=EncoderFields)


def with_manifest(config: C) -> C:
    """An encoder config naming a models-manifest entry, as the timm model it stands for (see
    :func:`manifest_encoder`); any other config unchanged. The edge and the cloud both call it,
    so a name resolves to the same model, weights and preprocessing on both sides."""
    found = manifest_encoder(
        config.name,
        weights=config.weights,
        random_init=config.random_init,
        model_kwargs=config.model_kwargs,
        preprocess=config.preprocess.model_dump(exclude_none=True),
    )
    if found is None:
        return config
    resolved: C = config.model_copy(
        update={
            "name": found.model,
            "weights": found.weights,
            "model_kwargs": found.model_kwargs,
            "preprocess": type(config.preprocess)(**found.preprocess),
        }
    )
    return resolved
