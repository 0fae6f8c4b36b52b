"""Click options shared by the commands that collect crops with the edge's own models
(``semcom cloud train-decoder``, ``semcom eval reconstruction``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from edge.encoder_options import encoder_model_options

F = TypeVar("F", bound=Callable[..., object])


def crop_source_options(func: F) -> F:
    """``--source`` (repeatable, as ``sources``), ``--imgsz``, the encoder's model options
    (``--encoder-weights``, ``--model-kwargs``, ``--encoder-preprocess``: see
    :mod:`edge.encoder_options`) and ``--encoder-runtime``; each command adds its own
    ``--detector``, ``--encoder`` and ``--random-init-encoder``, whose defaults differ."""
    options = [
        click.option(
            "--source",
            "sources",
            multiple=True,
            required=True,
            help="Video file or image folder (repeatable).",
        ),
        click.option("--imgsz", type=click.IntRange(32, 4096), help="Detector input size (px)."),
        encoder_model_options,
        click.option(
            "--encoder-runtime",
            type=click.Choice(["auto", "torch", "onnx", "onnx-int8"]),
            default="auto",
            show_default=True,
            help="Runtime of the encoder that makes the embeddings (auto: as the edge picks it).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
