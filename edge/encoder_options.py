"""The Click options that say how to build a timm encoder, one definition for every command
that builds one (the edge, the cloud's query encoder and decoder training, the demo, the
evaluations, the benchmarks, the simulator and its emulated edges).

- ``--encoder-weights PATH``: a local weights file (a state dict; classifier keys dropped);
- ``--model-kwargs KEY=VALUE`` (repeatable): ``timm.create_model`` arguments, values typed
  (``true``/``false`` -> bool, ``3`` -> int, ``0.1`` -> float, anything else a string);
- ``--encoder-preprocess KEY=VALUE`` (repeatable): overrides of the model's timm data config,
  keys ``size``, ``mean``, ``std`` (``0.5,0.5,0.5``), ``interpolation``.

Each command keeps its own ``--encoder`` and ``--random-init-encoder``, whose defaults differ.
Only click is imported here, so any command can use these options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from shared.timm_encoder import ModelKwargValue, parse_key_values, parse_model_kwargs, parse_scalar

F = TypeVar("F", bound=Callable[..., Any])

#: the keys of ``--encoder-preprocess``
PREPROCESS_KEYS: Final = ("size", "mean", "std", "interpolation")


def _model_kwargs(
    _ctx: click.Context, _param: click.Parameter, value: Sequence[str]
) -> dict[str, ModelKwargValue]:
    try:
        return parse_model_kwargs(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _preprocess(
    _ctx: click.Context, _param: click.Parameter, value: Sequence[str]
) -> dict[str, ModelKwargValue]:
    try:
        items = parse_key_values(value, "--encoder-preprocess")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    unknown = sorted(set(items) - set(PREPROCESS_KEYS))
    if unknown:
        raise click.BadParameter(
            f"unknown key(s) {', '.join(unknown)}; the keys are {', '.join(PREPROCESS_KEYS)}"
        )
    return {k: parse_scalar(v) for k, v in items.items()}


def encoder_model_options(func: F) -> F:
    """``--encoder-weights``, ``--model-kwargs`` and ``--encoder-preprocess`` (parameters
    ``encoder_weights``, ``model_kwargs`` and ``encoder_preprocess``: a path or None, and two
    dicts, empty when not given)."""
    options = [
        click.option(
            "--encoder-weights",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Local weights of a timm encoder (.safetensors/.pth/.bin state dict; "
            "classifier keys are dropped).",
        ),
        click.option(
            "--model-kwargs",
            "model_kwargs",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_model_kwargs,
            help="timm.create_model argument of the encoder (repeatable), e.g. pad_type=same "
            "for TensorFlow-ported weights.",
        ),
        click.option(
            "--encoder-preprocess",
            "encoder_preprocess",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_preprocess,
            help="Override the encoder's preprocessing (repeatable): size=224, "
            "mean=0.5,0.5,0.5, std=0.5,0.5,0.5, interpolation=bilinear [default: the model's "
            "timm data config].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def encoder_model_overrides(
    encoder_weights: Path | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    encoder_preprocess: Mapping[str, Any] | None = None,
    prefix: str = "encoder.",
) -> dict[str, Any]:
    """The dotted config overrides of these options (only what was given)."""
    out: dict[str, Any] = {}
    if encoder_weights is not None:
        out[f"{prefix}weights"] = encoder_weights
    if model_kwargs:
        out[f"{prefix}model_kwargs"] = dict(model_kwargs)
    if encoder_preprocess:
        out[f"{prefix}preprocess"] = dict(encoder_preprocess)
    return out


def model_kwargs_args(model_kwargs: Mapping[str, Any], preprocess: Mapping[str, Any]) -> list[str]:
    """The same options as command-line arguments (for a child ``semcom edge run``)."""
    args: list[str] = []
    for key, value in model_kwargs.items():
        args += ["--model-kwargs", f"{key}={_arg(value)}"]
    for key, value in preprocess.items():
        args += ["--encoder-preprocess", f"{key}={_arg(value)}"]
    return args


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
