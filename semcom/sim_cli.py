"""``semcom sim``: payload strategies on simulated links (``run``), and the link presets."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from edge.encoder_options import encoder_model_options

logger = logging.getLogger(__name__)

LEAN_PRESET = Path(__file__).resolve().parents[1] / "deploy" / "edge.lean.yaml"
"""The lean emission preset of a source checkout (``deploy/edge.lean.yaml``)."""


@click.group()
def sim() -> None:
    """Network simulation: what each payload strategy costs on a link, with how many cameras."""


@sim.command()
@click.option(
    "--scenario",
    "-s",
    "scenario_spec",
    default="paper",
    show_default=True,
    help="Built-in scenario name (paper, iot, quick) or a scenario YAML file.",
)
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Video to measure every strategy on.",
)
@click.option(
    "--messages",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Recorded message file (semcom edge run --out) instead of running the pipeline: "
    "semcom strategies only.",
)
@click.option("--detector", help="Detector model (.onnx/.pt/.engine/.yaml); needed with --source.")
@click.option("--encoder", default=None, help="timm model name or .onnx [default: scenario].")
@encoder_model_options
@click.option("--random-init-encoder", is_flag=True, help="Untrained encoder (reported as such).")
@click.option(
    "--encoder-runtime",
    type=click.Choice(["auto", "torch", "onnx", "onnx-int8"]),
    default=None,
    help="Runtime of a timm encoder [default: edge config].",
)
@click.option("--codec", default=None, help="The edge's embedding codec [default: scenario].")
@click.option("--imgsz", type=click.IntRange(32, 4096), help="Detector input size (px).")
@click.option("--max-frames", type=click.IntRange(1), help="Use at most this many frames.")
@click.option("--seed", type=click.IntRange(0), help="Seed [default: scenario].")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Edge config YAML (policy, crop scale, ...) the pipeline is built from.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sim-report"),
    show_default=True,
    help="Folder for report.md, CSV tables and PNG plots.",
)
@click.option(
    "--lean-preset",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Emission preset measured as semcom-lean on the same frames, layered over the edge "
    "config [default: deploy/edge.lean.yaml of the checkout, when there].",
)
@click.option("--no-lean", is_flag=True, help="Do not measure the lean preset.")
@click.option(
    "--codebook",
    "codebooks",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Codebook file (semcom codec fit), repeatable: each preset codes its embeddings with "
    "the one of the largest code within its uplink.codebook_max_bytes, as an edge takes from "
    "the codebooks its cloud offers.",
)
@click.option(
    "--warmup-vectors",
    type=click.IntRange(1),
    default=4096,
    show_default=True,
    help="Embeddings the cloud needs before it fits a codebook (its "
    "codebooks.auto_fit_min_vectors): the int8 warm-up reported per preset lasts that long.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the headline numbers as JSON.")
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
def run(
    scenario_spec: str,
    source: Path | None,
    messages: Path | None,
    detector: str | None,
    encoder: str | None,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    random_init_encoder: bool,
    encoder_runtime: str | None,
    codec: str | None,
    imgsz: int | None,
    max_frames: int | None,
    seed: int | None,
    config_path: Path | None,
    out: Path,
    lean_preset: Path | None,
    no_lean: bool,
    codebooks: tuple[Path, ...],
    warmup_vectors: int,
    as_json: bool,
    progress: bool,
) -> None:
    """Measure a clip's payload strategies and simulate them on the scenario's links.

    Writes OUT/report.md, strategies.csv, runs.csv, capacity.csv and PNG plots.
    """
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    from edge.errors import EdgeError
    from shared.errors import ProtocolError
    from sim.errors import SimError
    from sim.measure import count_frames, read_message_file
    from sim.report import RANDOM_INIT_WARNING, write_report
    from sim.runner import (
        edge_overrides,
        make_payloads,
        planned_runs,
        record_clip,
        simulate_scenario,
    )
    from sim.scenarios import load_scenario

    if (source is None) == (messages is None):
        raise click.UsageError("give exactly one of --source VIDEO or --messages FILE")
    if source is not None and not detector:
        raise click.UsageError("--source needs --detector (e.g. yolo11n.onnx)")
    if messages is not None and (codebooks or lean_preset is not None):
        raise click.UsageError(
            "--codebook and --lean-preset need --source (a recorded file "
            "holds one preset's messages, coded already)"
        )
    if no_lean:
        lean_preset = None
    elif lean_preset is None and LEAN_PRESET.is_file():
        lean_preset = LEAN_PRESET
    try:
        scenario = load_scenario(scenario_spec)
        changes: dict[str, Any] = {}
        if max_frames is not None:
            changes["max_frames"] = max_frames
        if seed is not None:
            changes["seed"] = seed
        scenario = scenario.model_copy(update=changes)
        if source is not None:
            assert detector is not None
            overrides = edge_overrides(
                scenario,
                source,
                detector,
                encoder=encoder,
                encoder_weights=encoder_weights,
                random_init=random_init_encoder,
                encoder_runtime=encoder_runtime,
                codec=codec,
                imgsz=imgsz,
                model_kwargs=model_kwargs,
                encoder_preprocess=encoder_preprocess,
            )
            frames = count_frames(source)
            if scenario.max_frames is not None:
                frames = min(frames or scenario.max_frames, scenario.max_frames)
            with tqdm(total=frames, desc="measure", unit="frame", disable=not progress) as bar:

                def frames_done(n: int) -> None:
                    bar.update(n - bar.n)

                rec = record_clip(
                    scenario,
                    overrides,
                    config_path,
                    tick=frames_done,
                    lean_preset=lean_preset,
                    codebooks=codebooks,
                )
        else:
            assert messages is not None
            rec = read_message_file(messages)
        payloads, _ = make_payloads(scenario, rec, warmup_vectors)
        with tqdm(
            total=planned_runs(scenario, payloads),
            desc="simulate",
            unit="run",
            disable=not progress,
        ) as runs_bar:

            def run_done(n: int) -> None:
                runs_bar.update(n)

            result = simulate_scenario(scenario, rec, tick=run_done, warmup_vectors=warmup_vectors)
            runs_bar.total = runs_bar.n
            runs_bar.refresh()
        doc = write_report(result, out)
    except (SimError, EdgeError, ProtocolError) as exc:
        raise click.ClickException(str(exc)) from None
    if rec.random_init:
        click.echo(f"warning: {RANDOM_INIT_WARNING}", err=True)
    click.echo(f"report: {out / 'report.md'}", err=True)
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        for s in doc["strategies"]:
            click.echo(
                f"{s['name']:<24} {s['bytes_per_s']:>14,.1f} B/s  vs raw "
                f"{s['reduction_vs_raw_pct'] if s['reduction_vs_raw_pct'] is not None else '-'} %"
            )


@sim.command()
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also validate and list the profiles of this YAML file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def profiles(path: Path | None, as_json: bool) -> None:
    """List the link presets (and a file's custom profiles) with their sources."""
    from sim.errors import SimError
    from sim.profiles import PRESETS, load_profiles

    items = list(PRESETS.values())
    if path is not None:
        try:
            items += load_profiles(path)
        except SimError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([p.model_dump(mode="json") for p in items], indent=1))
        return
    for p in items:
        trace = f", trace of {len(p.trace)} steps (mean)" if p.trace else ""
        click.echo(
            f"{p.name:<18} {p.mean_rate_bps / 1e3:>10,.0f} kbit/s  RTT {p.rtt_ms:>6g} ms  "
            f"jitter {p.jitter_ms:>4g} ms  loss {p.loss:<6g}{trace}"
        )
        click.echo(f"{'':<18} {p.description or '-'}; source: {p.source or '-'}")


def _emulate_command() -> click.Command:
    from sim.emulate_cli import build_command
    from sim.profiles import preset

    return build_command(resolve_profile=preset)


sim.add_command(_emulate_command())
