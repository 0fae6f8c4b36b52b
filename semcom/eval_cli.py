"""``semcom eval``: measurements of what the cloud makes of the vectors it receives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from semcom.crop_options import crop_source_options
from semcom.eval_analytics import analytics
from semcom.eval_llm import llm
from semcom.eval_tracks import tracks


@click.group("eval")
def eval_() -> None:
    """Evaluate the cloud's decoder (and describer) against pixel baselines, and its traffic
    analytics on the edge's tracks of a clip."""


@eval_.command()
@click.option(
    "--decoder",
    "checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Decoder checkpoint (`semcom cloud train-decoder` writes OUT/best.pt).",
)
@crop_source_options
@click.option("--detector", help="Detector model [default: the one recorded in the checkpoint].")
@click.option("--encoder", help="timm model name; must be the checkpoint's (the default).")
@click.option(
    "--random-init-encoder",
    is_flag=True,
    help="Untrained encoder; implied when the checkpoint was trained on one (it says so).",
)
@click.option("--codec", help="Codec [default: the checkpoint's].")
@click.option(
    "--sample-fps",
    type=click.FloatRange(min=0, min_open=True),
    help="Frames per second taken from videos [default: as for the training data].",
)
@click.option(
    "--max-crops",
    type=click.IntRange(1),
    help="Collect at most this many crops [default: as for the training data].",
)
@click.option(
    "--all-crops",
    is_flag=True,
    help="Evaluate every crop, even when the sources are the training data (default: only "
    "the objects held out from training, when the dataset is the training one).",
)
@click.option("--rows", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for reconstruction.json and grid.png.",
)
@click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Crop dataset cache."
)
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--progress/--no-progress", default=True)
def reconstruction(
    checkpoint: Path,
    sources: tuple[str, ...],
    detector: str | None,
    imgsz: int | None,
    encoder: str | None,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    random_init_encoder: bool,
    encoder_runtime: str,
    codec: str | None,
    sample_fps: float | None,
    max_crops: int | None,
    all_crops: bool,
    rows: int,
    out: Path | None,
    cache_dir: Path | None,
    device: str,
    as_json: bool,
    progress: bool,
) -> None:
    """PSNR/SSIM of rebuilt crops vs JPEG at the same byte budget as the transmitted code.

    Crops come from the sources through the edge's own detector, crops and encoder and the
    checkpoint's codec. Per crop, the JPEG quality is the highest whose file is no larger than
    one code (e.g. int8 at 768-d: 772 bytes); crops where even quality 1 is larger are counted.
    Writes a grid PNG: original | rebuilt | JPEG at equal bytes.
    """
    from cloud.decoder.checkpoint import load_decoder
    from cloud.decoder.errors import DecoderError
    from cloud.decoder.report import compare, grid_png
    from edge.config import DetectorConfig, TimmEncoderConfig
    from edge.errors import EdgeError
    from semcom.decoder_data import DEFAULT_CACHE, BuildSpec, build_dataset, default_threads
    from semcom.decoder_data import describe as describe_dataset
    from shared.errors import ProtocolError

    try:
        dec = load_decoder(
            checkpoint,
            device,
            encoder=encoder,
            random_init=True if random_init_encoder else None,
        )
        meta = dec.meta
        model = detector or meta.detector_path
        if not model:
            raise click.UsageError("the checkpoint records no detector: give --detector")
        trained_on = meta.data  # the training set's settings: the same set by default
        imgsz = imgsz or trained_on.get("detector_imgsz")
        spec = BuildSpec(
            sources=sources,
            detector=DetectorConfig(model=model, **({"imgsz": imgsz} if imgsz else {})),
            encoder=TimmEncoderConfig.model_validate(
                {
                    "name": meta.encoder,
                    "weights": encoder_weights,
                    "model_kwargs": model_kwargs,
                    "preprocess": encoder_preprocess,
                    "random_init": meta.random_init,
                    "runtime": encoder_runtime,
                    "threads": default_threads(),
                    "batch_size": 16,
                }
            ),
            codec=codec or meta.codec_spec or meta.codec,
            image_size=meta.image_size,
            crop_scale=meta.crop_scale,
            sample_fps=sample_fps if sample_fps else trained_on.get("sample_fps", 5.0),
            max_crops=max_crops or trained_on.get("max_crops"),
        )
        dataset, _path, _cached = build_dataset(spec, cache_dir or DEFAULT_CACHE, progress=progress)
        if dataset.meta.embed_dim != meta.embed_dim:
            raise DecoderError(
                f"the encoder gives {dataset.meta.embed_dim}-d, "
                f"the decoder reads {meta.embed_dim}-d"
            )
    except (EdgeError, ProtocolError, DecoderError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if len(dataset) == 0:
        raise click.ClickException("no detections in the sources: nothing to evaluate")
    held_out = dataset.meta.key == meta.dataset_key and not all_crops
    idx = dataset.split(meta.val_fraction, meta.split_seed)[1] if held_out else None
    seen = set(dataset.meta.sources) & set(meta.data.get("sources", []))
    if held_out:
        which = "objects held out from training"
    elif dataset.meta.key == meta.dataset_key:
        which = "every crop (the training data)"
    elif seen:
        which = "every crop; sources the decoder was trained on, so seen objects are included"
    else:
        which = "every crop (sources the decoder was not trained on)"
    originals = dataset.crops if idx is None else dataset.crops[idx]
    vectors = dataset.embeddings if idx is None else dataset.embeddings[idx]
    rebuilt = dec.decode(vectors)
    result, jpegs = compare(originals, rebuilt, meta.code_bytes)
    random_note = (
        "RANDOM-INIT encoder: embeddings carry no learned meaning" if meta.random_init else ""
    )
    report: dict[str, Any] = {
        "decoder": str(checkpoint),
        "decoder_meta": meta.describe(),
        "random_init_encoder": meta.random_init,
        "note": random_note,
        "dataset": describe_dataset(dataset),
        "evaluated": which,
        **result.to_dict(),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "reconstruction.json").write_text(json.dumps(report, indent=2) + "\n")
        title = f"{meta.encoder} {meta.codec} {meta.code_bytes} B" + (
            " RANDOM-INIT" if meta.random_init else ""
        )
        (out / "grid.png").write_bytes(grid_png(originals, rebuilt, jpegs, rows=rows, title=title))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(_table(report, out))


def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(r: dict[str, Any], out: Path | None) -> str:
    lines = [
        f"decoder: {r['decoder_meta']}",
        f"data: {r['dataset']}",
        f"evaluated: {r['crops']} crops, {r['evaluated']}",
    ]
    if r["note"]:
        lines.append(f"NOTE: {r['note']}")
    lines += [
        f"budget: {r['code_bytes']} bytes per crop (one transmitted code)",
        f"{'':28} {'PSNR (dB)':>10} {'SSIM':>8}",
        f"{'rebuilt from the code':28} {r['rebuilt_psnr']:>10.2f} {r['rebuilt_ssim']:>8.4f}",
    ]
    fits = r["jpeg_fits"]
    if fits:
        lines += [
            f"{'JPEG <= budget':28} {_fmt(r['jpeg_psnr'], '>10.2f')} "
            f"{_fmt(r['jpeg_ssim'], '>8.4f')}   ({fits}/{r['crops']} crops fit; mean "
            f"{r['jpeg_mean_bytes']:.0f} B, quality {r['jpeg_mean_quality']:.1f})",
            f"{'rebuilt, same crops':28} {_fmt(r['rebuilt_psnr_same_crops'], '>10.2f')} "
            f"{_fmt(r['rebuilt_ssim_same_crops'], '>8.4f')}",
        ]
    if fits < r["crops"]:
        lines.append(
            f"JPEG does not fit for {r['crops'] - fits} crops: even quality 1 needs more than "
            f"{r['code_bytes']} bytes (smallest quality-1 file: {r['jpeg_min_bytes_q1']} B)"
        )
    if out is not None:
        lines.append(f"wrote {out / 'reconstruction.json'} and {out / 'grid.png'}")
    return "\n".join(lines)


eval_.add_command(llm)  # `semcom eval llm` (semcom/eval_llm.py)
eval_.add_command(analytics)  # `semcom eval analytics` (semcom/eval_analytics.py)
eval_.add_command(tracks)  # `semcom eval tracks` (semcom/eval_tracks.py)
