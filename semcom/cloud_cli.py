"""``semcom cloud``: every command of ``cloud.cli`` plus ``train-decoder``.

``train-decoder`` builds its data with the edge's detector, crops and encoder, which the
``cloud`` package may not import; so the group the ``semcom`` command shows is assembled here,
in the layer that may import both. Everything heavy is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cloud.cli import cloud as _cloud
from semcom.crop_options import crop_source_options

cloud = click.Group(
    name="cloud",
    help=_cloud.help,
    commands=dict(_cloud.commands),
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _edge_defaults() -> tuple[str, str]:
    """The edge's default encoder name and codec (so both ends agree without a flag)."""
    from edge.config import EdgeConfig, TimmEncoderConfig

    return (
        str(TimmEncoderConfig.model_fields["name"].default),
        str(EdgeConfig.model_fields["codec"].default),
    )


@cloud.command("train-decoder")
@crop_source_options
@click.option(
    "--detector",
    required=True,
    help="Ultralytics detector (.pt/.onnx/.engine), as the edge runs it.",
)
@click.option("--encoder", help="timm model name [default: the edge's default encoder].")
@click.option(
    "--random-init-encoder",
    is_flag=True,
    help="DEVELOPMENT ONLY: untrained (seeded) encoder; the decoder and its outputs say so.",
)
@click.option(
    "--codec",
    help="Codec the embeddings go through, as the edges send them: f32, f16, int8 or a "
    "codebook .npz [default: the edge's default].",
)
@click.option(
    "--image-size",
    type=click.Choice(["64", "128", "224"]),
    default="64",
    show_default=True,
    help="Side of the rebuilt crops (px).",
)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option(
    "--width",
    type=click.IntRange(4, 256),
    default=16,
    show_default=True,
    help="Decoder channels at full resolution (doubled per stage towards the input).",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Training time budget (min; dataset building not counted): validate, save, stop.",
)
@click.option(
    "--sample-fps",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Frames per second taken from videos.",
)
@click.option("--max-crops", type=click.IntRange(1), help="Stop collecting after this many crops.")
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.01, 0.5),
    default=0.1,
    show_default=True,
    help="Share of tracked objects held out for validation.",
)
@click.option("--consistency-weight", type=click.FloatRange(min=0), default=0.2, show_default=True)
@click.option(
    "--consistency-every",
    type=click.IntRange(0),
    help="Re-encode rebuilt crops every k steps (0: never) [default: 10 on CPU, 1 on GPU].",
)
@click.option(
    "--consistency-samples",
    type=click.IntRange(0),
    help="Crops re-encoded per consistency step (0: the batch) [default: 4 on CPU, 0 on GPU].",
)
@click.option("--ssim-weight", type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    help="torch CPU threads [default: every core]; 1 is much faster on a machine shared "
    "with other busy processes.",
)
@click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda..."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for best.pt, last.pt and train.json.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where crop datasets are cached [default: ~/.cache/semcom/decoder-data].",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (weights, optimizer).")
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
def train_decoder(
    sources: tuple[str, ...],
    detector: str,
    imgsz: int | None,
    encoder: str | None,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    random_init_encoder: bool,
    encoder_runtime: str,
    codec: str | None,
    image_size: str,
    epochs: int,
    batch_size: int,
    lr: float,
    width: int,
    max_minutes: float | None,
    sample_fps: float,
    max_crops: int | None,
    val_fraction: float,
    consistency_weight: float,
    consistency_every: int | None,
    consistency_samples: int | None,
    ssim_weight: float,
    seed: int,
    threads: int | None,
    device: str,
    out: Path,
    cache_dir: Path | None,
    resume: bool,
    progress: bool,
) -> None:
    """Train the crop decoder (embedding -> image) on crops of the sources.

    Detects, crops and embeds with the edge's own code (cached), quantises through the codec
    the edges use, trains with pixel + SSIM + embedding-consistency losses, validates PSNR and
    SSIM on held-out objects every epoch, and writes OUT/best.pt for the cloud config's
    `decoder.checkpoint`.
    """
    import time
    from dataclasses import replace

    from cloud.decoder.errors import DecoderError
    from cloud.decoder.losses import default_weights
    from cloud.decoder.train import EpochResult, TrainSettings, resolve_device, train
    from edge.config import DetectorConfig, TimmEncoderConfig
    from edge.errors import EdgeError
    from semcom.decoder_data import DEFAULT_CACHE, BuildSpec, build_dataset, default_threads
    from semcom.decoder_data import describe as describe_dataset
    from shared.errors import ProtocolError

    default_encoder, default_codec = _edge_defaults()
    resolved = resolve_device(device)
    try:
        spec = BuildSpec(
            sources=sources,
            detector=DetectorConfig(
                model=detector, **({"imgsz": imgsz} if imgsz else {}), device=None
            ),
            encoder=TimmEncoderConfig(
                name=encoder or default_encoder,
                weights=encoder_weights,
                model_kwargs=model_kwargs,
                preprocess=encoder_preprocess,
                random_init=random_init_encoder,
                runtime=encoder_runtime,
                threads=default_threads(),
                batch_size=16,
                device="cuda" if resolved.startswith("cuda") else "cpu",
            ),
            codec=codec or default_codec,
            image_size=int(image_size),
            sample_fps=sample_fps,
            max_crops=max_crops,
        )
        started = time.monotonic()
        dataset, path, cached = build_dataset(spec, cache_dir or DEFAULT_CACHE, progress=progress)
    except (EdgeError, ProtocolError, DecoderError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    built_s = time.monotonic() - started
    click.echo(
        f"dataset ({'cached' if cached else f'built in {built_s:.0f} s'}): "
        f"{describe_dataset(dataset)}\n  {path}",
        err=True,
    )
    if len(dataset) < 2:
        raise click.ClickException(
            f"only {len(dataset)} crop(s) found in the sources: nothing to train on "
            "(check --detector, --imgsz and the sources)"
        )
    weights = default_weights(resolved)
    weights = replace(
        weights,
        ssim=ssim_weight,
        consistency=consistency_weight,
        consistency_every=weights.consistency_every
        if consistency_every is None
        else consistency_every,
        consistency_samples=weights.consistency_samples
        if consistency_samples is None
        else consistency_samples,
    )
    settings = TrainSettings(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        max_minutes=max_minutes,
        val_fraction=val_fraction,
        seed=seed,
        device=resolved,
        width=width,
        weights=weights,
        encoder_weights=encoder_weights,
        encoder_model_kwargs=model_kwargs,
        encoder_preprocess=encoder_preprocess,
        progress=progress,
        threads=threads,
    )

    def report(r: EpochResult) -> None:
        parts = " ".join(f"{k} {v:.4f}" for k, v in r.parts.items())
        click.echo(
            f"epoch {r.epoch}: loss {r.train_loss:.4f} ({parts}); held-out PSNR "
            f"{r.psnr:.2f} dB, SSIM {r.ssim:.4f} [{r.seconds:.0f} s, step {r.step}]",
            err=True,
        )

    try:
        result = train(dataset, out, settings, resume=resume, on_epoch=report)
    except (DecoderError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    note = (
        "\nNOTE: RANDOM-INIT encoder: the embeddings carry no learned meaning; this decoder "
        "only shows the pipeline works."
        if dataset.meta.random_init
        else ""
    )
    click.echo(
        f"stopped after {result.stopped} ({result.seconds / 60:.1f} min, "
        f"{result.parameters} parameters, {result.train_crops} train / {result.val_crops} "
        f"held-out crops)\nbest: {result.best}: {result.meta.describe()}{note}"
    )
