"""The demo's models: pulled on request (``--pull-models``), or untrained with a loud note.

A connected machine gets the official weights through ``semcom models pull`` (kept in the
models directory, so only the first run downloads); without a network the demo still runs,
on the YOLO11n architecture and a random-init encoder, and says plainly that nothing it finds
means anything.
"""

from __future__ import annotations

from pathlib import Path

import click

from semcom.demo_errors import DemoModelError


def _echo(text: str) -> None:
    click.echo(text, err=True)


DEFAULT_ENCODER = "vit_small_patch16_224"
PULLED_DETECTOR = "yolo11n"  # models-manifest names: the official weights of each library
PULLED_ENCODER = "mobilenetv2"
UNTRAINED_DETECTOR = "yolo11n.yaml"  # ultralytics' architecture, random weights


def pulled_models(
    detector: str, encoder: str, encoder_weights: Path | None
) -> tuple[str, str, bool]:
    """``semcom models pull`` of the demo's detector and encoder (a no-op once they are there).

    Returns the detector and encoder to run, and whether the encoder must be untrained: when a
    download fails (no network), the demo runs on untrained models and says so loudly.
    """
    from semcom.models_pull import pull
    from shared.models import ModelError, ModelStore, is_model_name

    store = ModelStore()
    wanted = [n for n in (detector, encoder) if is_model_name(n)]
    if encoder_weights is not None and encoder in wanted:
        wanted.remove(encoder)  # the user's own weights file: nothing to pull
    for name in wanted:
        _echo(f"demo: pulling {name} into {store.root} (once; `semcom models list` shows it)")
        try:
            result = pull(store, name)
        except ModelError as exc:
            _echo(
                f"demo: NOTE: cannot pull {name}: {exc}\n"
                "demo: NOTE: running on UNTRAINED models instead (yolo11n architecture, "
                f"random-init {DEFAULT_ENCODER}): nothing will be detected or found that means "
                "anything. Run `semcom models pull yolo11n mobilenetv2` on a connected machine."
            )
            return UNTRAINED_DETECTOR, DEFAULT_ENCODER, True
        _echo(f"demo: {name}: {'already there' if result.already else 'pulled'}: {result.path}")
    return detector, encoder, False


def check_detector(detector: str | None) -> None:
    from edge.detect import resolve_model
    from edge.errors import ModelNotFound

    try:
        resolve_model(detector or "yolo11n.pt")
    except ModelNotFound as exc:
        if detector is None:
            raise DemoModelError(
                "the edge's default detector (yolo11n.pt) is not on this machine and models "
                "are never downloaded at run time: pass --detector PATH (an ultralytics "
                ".pt/.onnx/.engine file, e.g. an ONNX export of yolo11n)"
            ) from None
        raise DemoModelError(f"{exc} (--detector)") from None
