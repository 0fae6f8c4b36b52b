"""``semcom eval tracks``: track ids per real object on a clip (id switches, false tracks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edge.encoder_options import encoder_model_options


def _setting(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in value:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        out[key.strip()] = yaml.safe_load(raw)
    return out


@click.command("tracks")
@click.option("--source", "-s", required=True, help="Video file or image folder.")
@click.option("--detector", "-d", help="Detector: a name of `semcom models list` or a model file.")
@click.option("--imgsz", type=click.IntRange(32, 4096), help="Detector input size (px).")
@click.option("--conf", type=click.FloatRange(0, 1), help="Detector confidence threshold.")
@click.option("--tracker", type=click.Choice(["bytetrack", "botsort"]))
@click.option("--encoder", help="timm model name (or an .onnx file) [default: the edge's].")
@encoder_model_options
@click.option("--random-init-encoder", is_flag=True, help="Untrained encoder (says so).")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Edge config file (detector, policy, encoder); flags win. Source pacing, sink and "
    "uplink are not used.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_setting,
    help="A dotted edge config key and its YAML value (repeatable), e.g. "
    "detector.tracking.track_buffer=60 or policy.relink_window_s=0 (no re-link).",
)
@click.option(
    "--truth",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ground truth of the clip: a YAML file with clip, real_objects (counted by eye) and "
    "counted (what was counted), e.g. docs/data/cars_kraten.truth.yaml.",
)
@click.option(
    "--max-frames", type=click.IntRange(1), help="Only the first N frames [default: all]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
def tracks(
    source: str,
    detector: str | None,
    imgsz: int | None,
    conf: float | None,
    tracker: str | None,
    encoder: str | None,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    random_init_encoder: bool,
    config_path: Path | None,
    settings: dict[str, Any],
    truth: Path | None,
    max_frames: int | None,
    as_json: bool,
    progress: bool,
) -> None:
    """Count the track ids the edge makes on a clip: tracker ids, confirmed tracks (those
    that sent a first-sight embedding), re-linked tracks, and with --truth the confirmed
    tracks per real object (1.0 is ideal; more means id switches or false tracks).

    The edge's detector, tracker, policy (with its re-link) and encoder run on every frame.
    """
    from pydantic import ValidationError
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    from edge.cli import flag_overrides
    from edge.config import load_config
    from edge.errors import EdgeError
    from semcom.analytics_edge import total_frames
    from semcom.track_ids import Truth, TruthError, count_tracks
    from shared.errors import ProtocolError

    flags = {
        "source": source,
        "detector": detector,
        "imgsz": imgsz,
        "conf": conf,
        "tracker": tracker,
        "encoder": encoder,
        "encoder_weights": encoder_weights,
        "model_kwargs": model_kwargs,
        "encoder_preprocess": encoder_preprocess,
        "random_init_encoder": True if random_init_encoder else None,
    }
    try:
        ground = Truth.load(truth) if truth is not None else None
        overrides = flag_overrides(**flags)
        overrides.update(settings)
        config = load_config(config_path, overrides, environ={})
        total = total_frames(source, 0.0, None, config.source.fps)
        if total is not None and max_frames is not None:
            total = min(total, max_frames)
        with tqdm(total=total, desc="edge", unit="frame", disable=not progress) as bar:
            count = count_tracks(config, lambda _n: bar.update(1), max_frames)
    except (EdgeError, ProtocolError, TruthError, ValidationError) as exc:
        raise click.ClickException(str(exc)) from None
    if count.frames == 0:
        raise click.ClickException(f"no frames from {source}")
    report = count.to_dict(ground)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(report_text(report))


def report_text(r: dict[str, Any]) -> str:
    s = r["settings"]
    t = s["tracking"]
    lines = [
        f"{r['source']}: {r['frames']} frames, {r['video_s']:.1f} s",
        f"edge: {s['detector']} conf {s['conf']}, {s['tracker']} (track_buffer "
        f"{t['track_buffer']}, new_track_thresh {t['new_track_thresh']}, match_thresh "
        f"{t['match_thresh']}), re-link window {s['relink_window_s']} s, min cosine "
        f"{s['relink_min_cosine']}, encoder {s['encoder']}"
        + (
            " (RANDOM-INIT: re-link compares meaningless embeddings)"
            if s["random_init_encoder"]
            else ""
        ),
        f"tracker ids:            {r['tracker_ids']}",
        f"confirmed tracks:       {r['confirmed_tracks']}  "
        + ", ".join(f"{k} {v}" for k, v in r["confirmed_by_class"].items()),
        f"re-linked tracks:       {r['relinked']}",
        f"flicker (unconfirmed):  {r['flicker_tracks']}",
        f"first-sight embeddings: {r['first_sight_embeddings']} (of {r['embeddings_sent']} sent)",
    ]
    if "real_objects" in r:
        lines += [
            f"real objects:           {r['real_objects']} ({r['real_objects_counted']})",
            f"ids per real object:    {r['ids_per_real_object']:.2f} confirmed, "
            f"{r['tracker_ids_per_real_object']:.2f} tracker ids",
        ]
    return "\n".join(lines)
