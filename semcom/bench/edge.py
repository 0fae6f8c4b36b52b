"""``semcom bench edge``: the edge pipeline against its bare-model bounds, on a video.

Measured in one run, on the same frames:

1. the detector's own predict+track loop alone, on frames already decoded in memory
   (``bare_fps``: the bound the pipeline cannot beat);
2. the whole threaded pipeline (decode, detect+track, policy, crop, embed, codec, framing),
   unpaced, into a null sink (``fps``);
3. the encoder alone on the crops the pipeline embedded (``encoder_alone_per_s``).

Rates of RoIs, embeddings, messages and bytes are per second of *video* (frames / source fps),
the figure a camera's uplink must carry in real time. ``paper_bytes_per_s`` is the paper's policy
on the same frames: every RoI sent as a float32 embedding (same encoder dim) in the same message
format; ``paper_768_bytes_per_s`` the same with the paper's 768-d ViT-B.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

from edge.config import load_config
from edge.daemon import build_agent
from edge.detect import Detector
from edge.encoder_options import encoder_model_options
from edge.errors import EdgeError
from edge.pipeline import EdgePipeline, EmbedJob, Timed
from semcom import software_version
from semcom.bench.codec import roi_envelope
from shared.codec import encode
from shared.errors import ProtocolError
from shared.vectors import create_codec


def _decode_frames(path: str, n: int | None) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames: list[np.ndarray] = []
    while n is None or len(frames) < n:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    if not frames:
        raise click.ClickException(f"no frames could be decoded from {path}")
    return frames, float(fps)


def _paper_roi_bytes(dim: int) -> int:
    """Mean size of an every-crop float32 RoI message (random unit vectors: zstd gains ~4 %)."""
    codec = create_codec("f32", dim)
    vectors = np.random.default_rng(0).standard_normal((64, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes = codec.encode(vectors)
    t0 = time.time_ns() // 1000
    sizes = [len(encode(roi_envelope(codec, c.tobytes(), i, t0))) for i, c in enumerate(codes)]
    return round(float(np.mean(sizes)))


def _bare_fps(detector: Detector, images: list[np.ndarray]) -> float:
    for image in images[:5]:  # warm-up, not timed
        detector.track(image)
    detector.reset()
    start = time.perf_counter()
    for image in images:
        detector.track(image)
    return len(images) / (time.perf_counter() - start)


class _RecordingPipeline(EdgePipeline):
    """The pipeline, keeping the crops it embeds (to time the encoder alone on them)."""

    crops: list[np.ndarray]

    def embed(self, jobs: list[EmbedJob]) -> list[Timed]:
        self.crops.extend(j.crop for j in jobs)
        return super().embed(jobs)


@click.command("edge")
@click.option(
    "--source", required=True, type=click.Path(exists=True, dir_okay=False), help="Video file."
)
@click.option("--detector", required=True, help="Detector model (.onnx/.pt/.engine/.yaml).")
@click.option(
    "--encoder",
    default="vit_small_patch16_224",
    show_default=True,
    help="timm model name or exported .onnx encoder.",
)
@encoder_model_options
@click.option("--random-init-encoder", is_flag=True, help="Untrained encoder (reported).")
@click.option(
    "--encoder-runtime",
    type=click.Choice(["auto", "torch", "onnx", "onnx-int8"]),
    default=None,
    help="Runtime of a timm encoder [default: config, auto = ONNX Runtime on CPU, int8 for "
    "transformers].",
)
@click.option("--imgsz", type=int, default=None, help="Detector input size [default: config].")
@click.option("--codec", default=None, help="Embedding codec [default: config].")
@click.option("--config", "-c", "config_path", type=click.Path(exists=True, path_type=Path))
@click.option("--frames", type=click.IntRange(1), default=None, help="Frames to use [all].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(
    source: str,
    detector: str,
    encoder: str,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    random_init_encoder: bool,
    encoder_runtime: str | None,
    imgsz: int | None,
    codec: str | None,
    config_path: Path | None,
    frames: int | None,
    as_json: bool,
) -> None:
    """Pipeline fps vs the bare detector+tracker, stage latencies, and bytes vs the paper."""
    from edge.cli import flag_overrides

    overrides = flag_overrides(
        source=source,
        detector=detector,
        encoder=encoder,
        encoder_weights=encoder_weights,
        model_kwargs=model_kwargs,
        encoder_preprocess=encoder_preprocess,
        random_init_encoder=random_init_encoder or None,
        encoder_runtime=encoder_runtime,
        imgsz=imgsz,
        codec=codec,
        pace=False,
    )
    try:
        config = load_config(config_path, overrides)
        images, fps = _decode_frames(source, frames)
        click.echo(f"... bare detector+tracker on {len(images)} decoded frames", err=True)
        bare_fps = _bare_fps(Detector(config.detector), images)
        bare_default_fps = None
        if config.detector.model.endswith(".onnx") and not config.detector.ort_spinning:
            click.echo("... bare detector+tracker, ONNX Runtime default threading", err=True)
            spinning = config.detector.model_copy(
                update={"ort_spinning": True, "ort_threads": None}
            )
            bare_default_fps = _bare_fps(Detector(spinning), images)

        click.echo("... full pipeline", err=True)
        agent = build_agent(config, software_version(), max_frames=len(images))
        agent.pipeline.__class__ = _RecordingPipeline
        agent.pipeline.crops = []  # type: ignore[attr-defined]
        stats = agent.runner.run(threading.Event())
        agent.sink.close()
        crops = np.stack(agent.pipeline.crops) if agent.pipeline.crops else None  # type: ignore[attr-defined]

        click.echo("... encoder alone on the same crops", err=True)
        enc_per_s = 0.0
        if crops is not None:
            start = time.perf_counter()
            agent.pipeline.encoder.embed(crops)
            enc_per_s = len(crops) / (time.perf_counter() - start)
    except (EdgeError, ProtocolError) as exc:
        raise click.ClickException(str(exc)) from None

    video_s = stats.frames / fps
    o = agent.outbox.stats
    rois = agent.pipeline.rois
    paper = _paper_roi_bytes(agent.pipeline.encoder.dim) * rois / video_s
    doc: dict[str, Any] = {
        "source": source,
        "detector": config.detector.model,
        "imgsz": config.detector.imgsz,
        "encoder": agent.pipeline.encoder.name,
        "encoder_runtime": agent.pipeline.encoder.runtime,
        "embedding_dim": agent.pipeline.encoder.dim,
        "random_init_encoder": agent.pipeline.encoder.random_init,
        "codec": agent.pipeline.codec.codec_id,
        "frames": stats.frames,
        "source_fps": round(fps, 3),
        "fps": round(stats.fps, 2),
        "bare_fps": round(bare_fps, 2),
        "ratio": round(stats.fps / bare_fps, 4),
        "bare_default_threading_fps": None
        if bare_default_fps is None
        else round(bare_default_fps, 2),
        "ort_spinning": config.detector.ort_spinning,
        "encoder_alone_per_s": round(enc_per_s, 2),
        "rois_per_s": round(rois / video_s, 2),
        "embeddings_per_s": round(o.messages["Embedding"] / video_s, 3),
        "embeddings_computed_per_s": round(len(agent.pipeline.crops) / video_s, 3),  # type: ignore[attr-defined]
        "messages_per_s": round(o.total_messages / video_s, 2),
        "bytes_per_s": round(o.total_bytes / video_s, 1),
        "paper_bytes_per_s": round(paper, 1),
        "paper_768_bytes_per_s": round(_paper_roi_bytes(768) * rois / video_s, 1),
        "bytes_vs_paper": round(o.total_bytes / video_s / paper, 5) if paper else None,
        "dropped_frames": stats.dropped_frames,
        "skipped_embeddings": stats.skipped_embeddings,
        "messages_by_type": dict(o.messages),
        "bytes_by_type": dict(o.bytes),
        "policy": {
            "tracks": agent.pipeline.policy.stats.tracks_started,
            "flicker_tracks": agent.pipeline.policy.stats.flicker_tracks,
            "sent": dict(agent.pipeline.policy.stats.sent),
            "quiet_drift_checks": agent.pipeline.policy.stats.drift_checks_quiet,
        },
        "stages": agent.pipeline.times.percentiles(),
        "rates_note": "rois/embeddings/messages/bytes per second of video (frames / source fps)",
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    for key, value in doc.items():
        if key != "stages":
            click.echo(f"{key:28} {value}")
    for stage, p in doc["stages"].items():
        click.echo(f"stage {stage:22} p50 {p['p50_ms']:8.2f} ms   p95 {p['p95_ms']:8.2f} ms")
