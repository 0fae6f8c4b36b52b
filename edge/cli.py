"""``semcom edge``: run the edge agent, export its encoder, show its configuration."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from edge.encoder_options import encoder_model_options, encoder_model_overrides
from edge.errors import EdgeError
from edge.export_cli import export_command
from edge.health_cli import health_options, run_summary
from edge.spool_cli import spool_group
from shared.errors import ProtocolError
from shared.logformat import LogFormat, console_line, use_log_format
from shared.version import software_version


def _config_options(fn: Any) -> Any:
    options = [
        click.option(
            "--config",
            "-c",
            "config_path",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="YAML config file (flags and SEMCOM_EDGE__* env win).",
        ),
        click.option(
            "--source", "-s", help="Video file, image folder, rtsp/http URL or camera index."
        ),
        click.option("--camera-id", help="Camera id sent with every message."),
        click.option("--edge-id", help="This agent's id."),
        click.option("--fps", type=float, help="Sample the source at this rate."),
        click.option("--loop/--no-loop", default=None, help="Restart files at their end."),
        click.option(
            "--pace/--no-pace",
            default=None,
            help="Play files at their own rate (default) or as fast as possible.",
        ),
        click.option(
            "--detector",
            "-d",
            help="Detector: a name of `semcom models list` or a .pt/.onnx/.engine/.yaml file.",
        ),
        click.option("--imgsz", type=int, help="Detector input size (px)."),
        click.option("--conf", type=float, help="Detector confidence threshold."),
        click.option("--tracker", type=click.Choice(["bytetrack", "botsort"])),
        click.option(
            "--encoder",
            "-e",
            help="timm model name, an exported .onnx encoder, or open_clip:MODEL[:TAG] (the "
            "image tower of a CLIP model, e.g. open_clip:ViT-B-32:laion2b_s34b_b79k).",
        ),
        encoder_model_options,
        click.option(
            "--random-init-encoder",
            is_flag=True,
            default=None,
            help="DEVELOPMENT ONLY: untrained encoder weights (outputs say so).",
        ),
        click.option(
            "--encoder-runtime",
            type=click.Choice(["auto", "torch", "onnx", "onnx-int8"]),
            help="Run a timm encoder in PyTorch, or export it at start-up to ONNX Runtime "
            "[default: auto = ONNX Runtime on CPU, int8 for transformers].",
        ),
        click.option("--codec", help="Embedding codec: f32, f16, int8 or a codebook .npz."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _uplink_options(fn: Any) -> Any:
    options = [
        click.option("--cloud", help="Send live to this cloud (URL, e.g. https://host:8443)."),
        click.option(
            "--token",
            envvar="SEMCOM_EDGE__UPLINK__TOKEN",
            help="This edge's token [env: SEMCOM_EDGE__UPLINK__TOKEN].",
        ),
        click.option("--transport", type=click.Choice(["webrtc", "websocket"])),
        click.option("--max-rate", help="Uplink budget, e.g. 200kbit."),
        click.option(
            "--spool", type=click.Path(dir_okay=False, path_type=Path), help="Spool file."
        ),
        click.option(
            "--ladder", help="Codec ladder, richest first, comma-separated (f16,int8,pq.npz)."
        ),
        click.option(
            "--ice-host-address",
            "ice_hosts",
            multiple=True,
            help="Offer ICE candidates only on this address (repeatable; 127.0.0.1 for loopback).",
        ),
        click.option(
            "--ca-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="CA bundle of the cloud's TLS certificate.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def uplink_overrides(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "uplink.cloud": kw.get("cloud"),
        "uplink.token": kw.get("token"),
        "uplink.transport": kw.get("transport"),
        "uplink.max_rate": kw.get("max_rate"),
        "uplink.spool_path": kw.get("spool"),
        "uplink.ca_file": kw.get("ca_file"),
        "uplink.ladder": kw["ladder"].split(",") if kw.get("ladder") else None,
        "uplink.ice_host_addresses": list(kw["ice_hosts"]) if kw.get("ice_hosts") else None,
        "health.listen": kw.get("health_listen"),
    }
    return {k: v for k, v in out.items() if v is not None}


def flag_overrides(**kw: Any) -> dict[str, Any]:
    encoder = kw.get("encoder")
    out: dict[str, Any] = {
        "source.uri": kw.get("source"),
        "source.camera_id": kw.get("camera_id"),
        "edge_id": kw.get("edge_id"),
        "source.fps": kw.get("fps"),
        "source.loop": kw.get("loop"),
        "source.pace": kw.get("pace"),
        "detector.model": kw.get("detector"),
        "detector.imgsz": kw.get("imgsz"),
        "detector.conf": kw.get("conf"),
        "detector.tracker": kw.get("tracker"),
        "codec": kw.get("codec"),
    }
    if encoder is not None and str(encoder).endswith(".onnx"):
        out.update({"encoder.type": "onnx", "encoder.path": encoder})
    elif encoder is not None and str(encoder).startswith("open_clip:"):
        _, model, *tag = str(encoder).split(":", 2)
        out.update(
            {
                "encoder.type": "open_clip",
                "encoder.model": model,
                "encoder.pretrained": tag[0] if tag else None,
                "encoder.weights": kw.get("encoder_weights"),
                "encoder.random_init": kw.get("random_init_encoder"),
                "encoder.runtime": kw.get("encoder_runtime"),
            }
        )
    else:
        out.update(
            {
                "encoder.name": encoder,
                "encoder.weights": kw.get("encoder_weights"),
                "encoder.random_init": kw.get("random_init_encoder"),
                "encoder.runtime": kw.get("encoder_runtime"),
            }
        )
    # timm encoders only: another type refuses them, naming the flag's layer
    out.update(encoder_model_overrides(None, kw.get("model_kwargs"), kw.get("encoder_preprocess")))
    return {k: v for k, v in out.items() if v is not None}


def _load(config_path: Path | None, extra: dict[str, Any] | None = None, **kw: Any) -> Any:
    from edge.config import load_config

    overrides = flag_overrides(**kw)
    overrides.update(uplink_overrides(**kw))
    overrides.update(extra or {})
    return load_config(config_path, overrides)


@click.group()
def edge() -> None:
    """The edge agent: camera -> detections, tracks and embeddings -> messages."""


edge.add_command(spool_group)
edge.add_command(export_command)


@edge.command()
@_config_options
@_uplink_options
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append encoded messages to this file (replayable by cloud and sim).",
)
@click.option("--max-frames", type=click.IntRange(1), help="Stop after this many frames.")
@click.option("--status/--no-status", default=True, help="Live one-line status on stderr.")
@health_options
def run(
    out: Path | None,
    max_frames: int | None,
    status: bool,
    log_format: LogFormat,
    config_path: Path | None,
    **kw: Any,
) -> None:
    """Run the edge agent on a source until it ends or SIGINT/SIGTERM.

    Messages go to the cloud (--cloud, --token: spooled durably, sent over WebRTC or a
    WebSocket) or to a message file (--out).
    """
    from edge.daemon import build_agent, run_agent

    use_log_format(log_format)
    extra = {"sink": {"type": "file", "path": str(out)}} if out else None
    try:
        config = _load(config_path, extra, **kw)
        if config.sink is None and config.uplink is None:
            raise click.UsageError(
                "nowhere to send messages: give --cloud URL --token T, or --out FILE"
            )
        if config.sink is not None and config.uplink is not None:
            raise click.UsageError("give either a cloud (uplink) or a message file, not both")
        agent = build_agent(config, software_version(), max_frames=max_frames)
    except (EdgeError, ProtocolError) as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        click.echo(f"\n{signal.Signals(signum).name}: stopping, flushing messages...", err=True)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        stats = run_agent(agent, stop, status=status and sys.stderr.isatty())
    except (EdgeError, ProtocolError) as exc:
        raise click.ClickException(str(exc)) from None
    o = agent.outbox.stats
    note = (
        " (RANDOM-INIT encoder: embeddings carry no meaning)"
        if agent.pipeline.encoder.random_init
        else ""
    )
    text = (
        f"{stats.frames} frames in {stats.elapsed_s:.1f} s ({stats.fps:.1f} fps), "
        f"{stats.dropped_frames} frames dropped, {stats.skipped_embeddings} embeddings skipped, "
        f"{o.total_messages} messages, {o.total_bytes} bytes -> {_target(agent)}; encoder "
        f"{agent.pipeline.encoder.name} on {agent.pipeline.encoder.execution}{note}"
    )
    figures = run_summary(agent, stats) if log_format == "json" else {}
    click.echo(console_line(text, log_format, "edge.run", summary=figures), err=True)


def _target(agent: Any) -> str:
    if agent.uplink is None:
        return str(agent.config.sink.path)
    stats = agent.uplink.uplink.stats
    return (
        f"{agent.config.uplink.cloud} ({stats.acked_frames} acknowledged, "
        f"{stats.connects} connections)"
    )


@edge.command()
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML config file (its edge_id and uplink sections are used).",
)
@click.option("--edge-id", help="This agent's id.")
@_uplink_options
@click.option("--synthetic", is_flag=True, help="Send a synthetic traffic scene instead of FILE.")
@click.option("--drain", is_flag=True, help="Send nothing new: empty the spool, then exit.")
@click.option("--seconds", type=float, default=30.0, show_default=True, help="Synthetic length.")
@click.option("--tracks-per-s", type=float, default=4.0, show_default=True)
@click.option("--update-s", type=float, default=1.0, show_default=True)
@click.option("--dim", type=int, default=768, show_default=True, help="Embedding dim.")
@click.option("--rate", type=float, help="Pace FILE at this many messages per second.")
@click.option(
    "--codebook",
    "codebooks",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Codebook needed to decode FILE's embeddings (repeatable).",
)
@click.option("--drain-timeout", type=float, help="Seconds to keep sending after the stream.")
@click.option(
    "--report", type=click.Path(dir_okay=False, path_type=Path), help="Write a JSON report here."
)
@health_options
def replay(
    file: Path | None,
    config_path: Path | None,
    edge_id: str | None,
    synthetic: bool,
    drain: bool,
    seconds: float,
    tracks_per_s: float,
    update_s: float,
    dim: int,
    rate: float | None,
    codebooks: tuple[Path, ...],
    drain_timeout: float | None,
    report: Path | None,
    log_format: LogFormat,
    **kw: Any,
) -> None:
    """Send a message FILE, a synthetic scene, or the spool's backlog to the cloud.

    For load tests and store-and-forward: embeddings are re-encoded with the codec the rate
    controller picks. Synthetic vectors are not real embeddings; reports say so.
    """
    from edge.config import load_health_config, load_uplink_config
    from edge.loadgen import SceneSpec
    from edge.replay import run_replay

    use_log_format(log_format)
    if sum([file is not None, synthetic, drain]) != 1:
        raise click.UsageError("give exactly one of FILE, --synthetic and --drain")
    overrides = uplink_overrides(**kw)
    overrides["edge_id"] = edge_id
    if drain_timeout is not None:
        overrides["uplink.drain_timeout_s"] = drain_timeout
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        eid, config = load_uplink_config(config_path, overrides)
        health = load_health_config(config_path, overrides)
        result = run_replay(
            eid,
            config,
            software_version(),
            file=file,
            scene=SceneSpec(tracks_per_s=tracks_per_s, update_s=update_s) if synthetic else None,
            seconds=seconds,
            dim=dim,
            codebooks=codebooks,
            rate=rate,
            stop=stop,
            health=health,
        )
    except (EdgeError, ProtocolError) as exc:
        raise click.ClickException(str(exc)) from None
    if report is not None:
        report.write_text(result.to_json())
    note = " (synthetic vectors)" if synthetic else ""
    text = (
        f"{sum(result.messages.values())} messages ({result.bytes} bytes) in "
        f"{result.elapsed_s:.1f} s; {result.uplink['acked_frames']} acknowledged, "
        f"{result.left_in_spool} left in the spool, {result.quarantined} quarantined "
        f"(`semcom edge spool quarantine list`){note}"
    )
    figures = json.loads(result.to_json()) if log_format == "json" else {}
    click.echo(console_line(text, log_format, "edge.replay", summary=figures), err=True)


@edge.command("show-config")
@_config_options
def show_config(config_path: Path | None, **kw: Any) -> None:
    """Validate and print the effective configuration (defaults < file < env < flags) as JSON."""
    try:
        config = _load(config_path, **kw)
    except EdgeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(config.model_dump(mode="json"), indent=2))


@edge.command("export-encoder")
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
    "--quantize",
    type=click.Choice(["none", "int8"]),
    default="none",
    show_default=True,
    help="Dynamic int8 quantisation of the weights (faster on CPU).",
)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export_encoder(
    encoder: str,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    random_init_encoder: bool,
    quantize: str,
    out: Path,
) -> None:
    """Export a timm encoder to ONNX, with its preprocessing, for ONNX Runtime / TensorRT."""
    from pydantic import ValidationError

    from edge.export import describe_encoder, export_encoder_onnx
    from shared.settings import describe_errors

    try:
        enc = export_encoder_onnx(
            out,
            name=encoder,
            weights=encoder_weights,
            random_init=random_init_encoder,
            model_kwargs=model_kwargs,
            preprocess=encoder_preprocess,
            quantize=quantize,
        )
    except ValidationError as exc:
        message = f"invalid encoder options: {describe_errors(exc.errors())}"
        raise click.ClickException(message) from None
    except EdgeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(describe_encoder(enc, out, quantize))


@edge.command("embed-sample")
@_config_options
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the embeddings (.npz: 'embeddings' plus a 'description').",
)
@click.option("--max-embeddings", type=click.IntRange(1), default=20_000, show_default=True)
@click.option(
    "--every", type=click.IntRange(1), default=2, show_default=True, help="Use every N-th frame."
)
def embed_sample(
    out: Path, max_embeddings: int, every: int, config_path: Path | None, **kw: Any
) -> None:
    """Embed the RoI crops of a source, for `semcom codec fit` and `semcom bench codec`.

    Runs this edge's own detector, crop rule and encoder on every box of every N-th frame.
    """
    import numpy as np

    from edge.sample import collect_embeddings

    try:
        config = _load(config_path, {"source.pace": False}, **kw)
        vectors, description = collect_embeddings(config, max_embeddings, every)
    except (EdgeError, ProtocolError) as exc:
        raise click.ClickException(str(exc)) from None
    if not len(vectors):
        raise click.ClickException("no detections in the source: nothing to embed")
    np.savez(out, embeddings=vectors, description=np.array(description))
    click.echo(f"wrote {out}: {description}")
