"""``semcom edge export``: the detector and the encoder, exported side by side for the edge.

Only click and light modules are imported here; the exporters load when the command runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import click

from edge.encoder_options import encoder_model_options
from edge.errors import EdgeError


def encoder_file(name: str, quantize: str, random_init: bool) -> str:
    """``vit_small_patch16_224.onnx``, ``...-int8.onnx``, ``...-random-init.onnx``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    int8 = "-int8" if quantize == "int8" else ""
    return f"{safe}{int8}{'-random-init' if random_init else ''}.onnx"


@click.command("export")
@click.option(
    "--detector",
    "-d",
    default="yolo11n",
    show_default=True,
    help="Detector: a name of `semcom models list`, a .pt, or a .yaml (untrained: tests only).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["engine", "onnx"]),
    default="engine",
    show_default=True,
    help="engine: a TensorRT engine (built on the Jetson that runs it; needs CUDA and "
    "TensorRT); onnx: an ONNX file for any machine.",
)
@click.option("--imgsz", type=click.IntRange(32, 4096), help="Detector input size [default: 640].")
@click.option(
    "--half", is_flag=True, help="fp16: the detector engine, and the encoder's TensorRT engine."
)
@click.option(
    "--int8",
    is_flag=True,
    help="int8 detector engine, calibrated on --data (the encoder stays fp16/fp32).",
)
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ultralytics dataset YAML of local images for --int8 calibration.",
)
@click.option("--workspace", type=click.FloatRange(min=0.1), help="TensorRT workspace (GiB).")
@click.option("--device", help="ultralytics export device [default: 0 for engine, cpu for onnx].")
@click.option(
    "--encoder", "-e", default="vit_base_patch16_224", show_default=True, help="timm model name."
)
@encoder_model_options
@click.option(
    "--random-init-encoder",
    is_flag=True,
    help="DEVELOPMENT ONLY: export untrained weights (recorded in the file).",
)
@click.option(
    "--encoder-quantize",
    type=click.Choice(["none", "int8"]),
    default="none",
    show_default=True,
    help="Dynamic int8 encoder weights: for the CPU provider only (TensorRT and CUDA run fp32 "
    "files, fp16 with --half).",
)
@click.option("--only", type=click.Choice(["detector", "encoder"]), help="Export only this model.")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the exported files.",
)
def export_command(
    detector: str,
    fmt: Literal["engine", "onnx"],
    imgsz: int | None,
    half: bool,
    int8: bool,
    data: Path | None,
    workspace: float | None,
    device: str | None,
    encoder: str,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    random_init_encoder: bool,
    encoder_quantize: Literal["none", "int8"],
    only: str | None,
    out: Path,
) -> None:
    """Export the detector with ultralytics (a TensorRT .engine on the Jetson, or .onnx) and
    the encoder to ONNX, into one folder; print the edge config lines that use them.

    The encoder runs through ONNX Runtime's TensorRT provider (which builds and caches its
    own engine at the first start), else CUDA, else the CPU.
    """
    from pydantic import ValidationError

    from edge.export import (
        DetectorExport,
        check_engine_export,
        config_lines,
        describe_encoder,
        export_detector,
        export_encoder_onnx,
    )
    from shared.settings import describe_errors

    if half and int8:
        raise click.UsageError("give --half or --int8, not both")
    if int8 and (fmt != "engine" or data is None):
        raise click.UsageError("--int8 is for --format engine, with --data DATASET.yaml")
    out = out.expanduser().resolve()
    spec = DetectorExport(fmt, imgsz, half, int8, data, workspace, device)
    exported = encoder_path = None
    try:
        if fmt == "engine" and only != "encoder":
            check_engine_export()  # before the encoder's export, which takes a while
        if only != "detector":
            encoder_path = out / encoder_file(encoder, encoder_quantize, random_init_encoder)
            enc = export_encoder_onnx(
                encoder_path,
                name=encoder,
                weights=encoder_weights,
                random_init=random_init_encoder,
                model_kwargs=model_kwargs,
                preprocess=encoder_preprocess,
                quantize=encoder_quantize,
            )
            click.echo(describe_encoder(enc, encoder_path, encoder_quantize))
        if only != "encoder":
            exported = export_detector(detector, spec, out)
            note = " (UNTRAINED: boxes are noise)" if exported.untrained else ""
            click.echo(
                f"wrote {exported.path}: detector {detector}, {fmt}, {spec.precision}, "
                f"imgsz {exported.imgsz}{note}"
            )
    except ValidationError as exc:
        message = f"invalid encoder options: {describe_errors(exc.errors())}"
        raise click.ClickException(message) from None
    except EdgeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\nedge config (e.g. /etc/semcom/edge.yaml):")
    click.echo(config_lines(exported, encoder_path, engine=fmt == "engine", fp16=half))
