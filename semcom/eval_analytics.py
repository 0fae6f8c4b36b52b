"""``semcom eval analytics``: the edge's tracks on a clip, through the cloud's analytics engine.

Three steps, each the project's own code: the edge agent runs on the clip and records its
messages (:mod:`semcom.analytics_edge`, as ``semcom edge run --out`` would); the tracks are
rebuilt from those messages (:mod:`semcom.analytics_tracks`, what the cloud receives); each
track goes through :func:`cloud.analytics.engine.analyze_track` with the scene, and the events
are summed up (:mod:`semcom.analytics_report`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from cloud.analytics.scene import Scene
    from edge.config import EdgeConfig


@click.command("analytics")
@click.option(
    "--source",
    "-s",
    required=True,
    help="The clip: a video file (or anything `semcom edge run --source` takes; a live "
    "source needs --seconds).",
)
@click.option(
    "--scene",
    "scene_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Scene file: lines, zones, calibration (format: deploy/scenes/README.md).",
)
@click.option(
    "--detector",
    "-d",
    help="Detector: a name of `semcom models list` or a .pt/.onnx/.engine file "
    "[default: the edge's].",
)
@click.option(
    "--start",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Skip the first S seconds of video (the tracker starts there).  [default: 0]",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    help="Analyse only N seconds of video [default: all of it].",
)
@click.option("--imgsz", type=int, help="Detector input size (px) [default: the model's].")
@click.option("--conf", type=float, help="Detector confidence threshold.")
@click.option("--tracker", type=click.Choice(["bytetrack", "botsort"]))
@click.option("--fps", type=float, help="Sample the clip at this rate [default: every frame].")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Edge config file (detector, policy: e.g. policy.detections_every_frames); flags win. "
    "Its source, sink, uplink and encoder are not used.",
)
@click.option(
    "--messages",
    "messages_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the edge's recorded messages in this new file (replayable like `edge run --out`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
def analytics(
    source: str,
    scene_path: Path,
    detector: str | None,
    start: float,
    seconds: float | None,
    imgsz: int | None,
    conf: float | None,
    tracker: str | None,
    fps: float | None,
    config_path: Path | None,
    messages_path: Path | None,
    as_json: bool,
    progress: bool,
) -> None:
    """Count and measure a clip's traffic: the edge's detector and tracker on the clip, the
    cloud's analytics engine on the tracks they make.

    Prints crossings per line, class and direction, zone entries and dwell, speeds and
    incidents (stopped vehicles, wrong way). Classes are COCO names; times are seconds of
    video.
    """
    from cloud.analytics.scene import SceneError, load_scene
    from edge.errors import EdgeError
    from semcom.analytics_edge import clip_config
    from semcom.analytics_tracks import MessageFileError
    from shared.errors import ProtocolError

    try:
        scene = load_scene(scene_path)
    except SceneError as exc:
        raise click.ClickException(str(exc)) from None
    if messages_path is not None and messages_path.exists():
        raise click.UsageError(f"--messages {messages_path} exists: give a new file")
    flags = {"detector": detector, "imgsz": imgsz, "conf": conf, "tracker": tracker, "fps": fps}
    with tempfile.TemporaryDirectory(prefix="semcom-analytics-") as tmp:
        out = messages_path or Path(tmp) / "messages.bin"
        try:
            config = clip_config(config_path, source, flags, out)
            report = _evaluate(config, scene, str(scene_path), source, (start, seconds), progress)
        except (EdgeError, ProtocolError, MessageFileError) as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from semcom.analytics_report import report_text

    click.echo(report_text(report))
    if messages_path is not None:
        click.echo(f"messages kept in {messages_path}")


def _evaluate(
    config: EdgeConfig,
    scene: Scene,
    scene_path: str,
    source: str,
    span: tuple[float, float | None],
    progress: bool,
) -> dict[str, Any]:
    """Run the edge on the clip, rebuild its tracks, analyse each; the report object."""
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    from cloud.analytics.engine import analyze_track, compile_scene
    from semcom.analytics_edge import Clip, total_frames
    from semcom.analytics_report import build_report
    from semcom.analytics_tracks import collect_tracks, read_messages

    start, seconds = span
    compiled = compile_scene(scene)
    total = total_frames(source, start, seconds, config.source.fps)
    clip = Clip.open(config, start=start, seconds=seconds)  # a missing source or detector
    with tqdm(total=total, desc="edge", unit="frame", disable=not progress) as bar:
        run = clip.run(on_frame=lambda _f: bar.update(1))
    if run.frames == 0:
        raise click.ClickException(
            f"no frames from {source}" + (f" after {start:g} s" if start else "")
        )
    assert config.sink is not None  # clip_config set it
    collected = collect_tracks(read_messages(config.sink.path))
    events = {
        t.track.key: analyze_track(compiled, t.track)
        for t in tqdm(collected.tracks, desc="analytics", unit="track", disable=not progress)
    }
    edge = {
        "detector": run.detector,
        "imgsz": run.imgsz,
        "tracker": run.tracker,
        "sample_fps": run.sample_fps,
        "native_fps": run.native_fps,
        "frames": run.frames,
        "start_s": start,
        "video_s": round(run.video_s + (1 / (run.sample_fps or run.native_fps or 25.0)), 2)
        if run.frames
        else 0.0,
        "elapsed_s": round(run.elapsed_s, 1),
        "messages": run.messages,
        "boxes_every_frames": config.policy.detections_every_frames,
    }
    return build_report(
        scene=scene,
        scene_path=scene_path,
        collected=collected,
        events=events,
        edge=edge,
        source=source,
        offset_s=start,
    )
