"""``semcom sim emulate``: real cloud and edge processes over a shaped link (needs root).

:func:`build_command` makes the click command; give it ``resolve_profile`` (name -> a
:class:`~sim.emulate.LinkProfile`) to enable ``--profile NAME``; flags override the profile's
fields.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edge.encoder_options import encoder_model_options

logger = logging.getLogger(__name__)

ProfileResolver = Callable[[str], Any]


def _rate(value: str | None) -> float | None:
    if value is None:
        return None
    from edge.config import parse_rate

    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rate") from None


def build_command(resolve_profile: ProfileResolver | None = None) -> click.Command:
    """The ``emulate`` command; ``--profile`` is offered only with a ``resolve_profile``."""

    @click.command("emulate")
    @click.option("--rate", help="Uplink rate, e.g. 256kbit, 2mbit (bit/s).")
    @click.option("--rtt-ms", type=click.FloatRange(0), help="Round-trip time added (ms).")
    @click.option("--jitter-ms", type=click.FloatRange(0), help="+- per-packet jitter (ms).")
    @click.option("--loss", type=click.FloatRange(0, 1, max_open=True), help="Loss per direction.")
    @click.option("--duration", type=click.FloatRange(1), default=60.0, show_default=True,
                  help="Seconds measured, from the first committed message.")  # fmt: skip
    @click.option("--source", "-s", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Video file, paced at real time (looped).")  # fmt: skip
    @click.option("--detector", "-d", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Detector model (.onnx/.pt).")  # fmt: skip
    @click.option("--imgsz", type=int, default=320, show_default=True, help="Detector size (px).")
    @click.option("--encoder", "-e", help="timm model name or exported .onnx encoder.")
    @encoder_model_options
    @click.option(
        "--random-init-encoder",
        is_flag=True,
        help="DEVELOPMENT ONLY: untrained encoder weights (the report says so).",
    )
    @click.option("--encoder-runtime", type=click.Choice(["auto", "torch", "onnx", "onnx-int8"]))
    @click.option("--codec", help="Embedding codec: f32, f16, int8 or a codebook .npz.")
    @click.option("--ladder", help="Codec ladder, richest first (f16,int8,...).")
    @click.option("--edge-max-rate", help="The edge's own uplink budget (default: none).")
    @click.option("--queue-ms", type=click.FloatRange(1), default=500.0, show_default=True,
                  help="Bottleneck queue length, in ms of the rate.")  # fmt: skip
    @click.option("--drain-timeout", type=click.FloatRange(0), default=30.0, show_default=True,
                  help="Seconds the edge keeps sending after the window.")  # fmt: skip
    @click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
                  help="Logs, cloud DB and spool (default: a new temporary folder).")  # fmt: skip
    @click.option("--seed", type=int, default=0, show_default=True, help="Jitter/loss seed.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.option(
        "--cleanup",
        is_flag=True,
        help="Only remove namespaces left by killed runs (semcom-emu-*), then exit.",
    )
    def emulate_cmd(**kw: Any) -> None:
        """Run `semcom cloud serve` and `semcom edge run` in network namespaces joined by a
        link shaped at the profile's uplink rate (tc tbf), with delay/jitter/loss added by a
        user-space relay; report goodput and capture->commit latency. Needs root."""
        _run(kw, resolve_profile)

    if resolve_profile is not None:
        emulate_cmd = click.option("--profile", "profile_name", help="Named link profile.")(
            emulate_cmd
        )
    return emulate_cmd


def _profile(kw: dict[str, Any], resolve_profile: ProfileResolver | None) -> Any:
    from sim.emulate import EmulationProfile

    base: Any = None
    if kw.get("profile_name"):
        assert resolve_profile is not None
        base = resolve_profile(kw["profile_name"])
    rate = _rate(kw["rate"])
    if base is None and rate is None:
        raise click.UsageError("give --rate (or --profile)")

    def pick(key: str) -> float:
        value = kw[key] if kw[key] is not None else getattr(base, key, 0.0)
        return float(value)

    return EmulationProfile(
        rate_bps=rate if rate is not None else float(base.rate_bps),
        rtt_ms=pick("rtt_ms"),
        jitter_ms=pick("jitter_ms"),
        loss=pick("loss"),
        name=str(kw.get("profile_name") or "custom"),
    )


def _run(kw: dict[str, Any], resolve_profile: ProfileResolver | None) -> None:
    from sim import netns
    from sim.emulate import EdgeOptions, emulate

    try:
        if kw["cleanup"]:
            netns.check_privileges()
            removed = netns.cleanup_leftovers()
            click.echo(f"removed {len(removed)} namespaces" + (f": {removed}" if removed else ""))
            return
        profile = _profile(kw, resolve_profile)
        if kw["source"] is None or kw["detector"] is None:
            raise click.UsageError("give --source VIDEO and --detector MODEL")
        options = EdgeOptions(
            source=kw["source"],
            detector=kw["detector"],
            imgsz=kw["imgsz"],
            encoder=kw["encoder"],
            encoder_weights=kw["encoder_weights"],
            model_kwargs=kw["model_kwargs"],
            encoder_preprocess=kw["encoder_preprocess"],
            random_init_encoder=kw["random_init_encoder"],
            encoder_runtime=kw["encoder_runtime"],
            codec=kw["codec"],
            ladder=kw["ladder"],
            max_rate=kw["edge_max_rate"],
            drain_timeout_s=kw["drain_timeout"],
        )
        result = emulate(
            profile,
            options,
            kw["duration"],
            workdir=kw["workdir"],
            queue_ms=kw["queue_ms"],
            seed=kw["seed"],
        )
    except netns.EmulationError as exc:
        raise click.ClickException(str(exc)) from None
    if kw["as_json"]:
        click.echo(result.to_json())
        return
    lat = result.latency_ms
    note = ""
    if result.random_init_encoder and "RANDOM-INIT" not in result.edge_summary:
        note = " (RANDOM-INIT encoder: embeddings carry no meaning)"
    click.echo(
        f"profile {dataclasses.asdict(profile)}\n"
        f"window {result.window_s:.0f} s: goodput {result.goodput_bps / 1000:.1f} kbit/s "
        f"(offered {result.offered_bps / 1000:.1f} kbit/s), {result.committed_messages} messages\n"
        f"latency capture->commit p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, "
        f"p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms\n"
        f"wire: {result.wire}\nundelivered at exit: {result.undelivered_messages}\n"
        f"edge: {result.edge_summary}{note}\nworkdir: {result.workdir}"
    )


emulate = build_command()
