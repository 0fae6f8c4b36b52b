"""``semcom bench fidelity``: what each embedding codec keeps of the meaning of real RoI crops.

Crops of tracked road users are cut from real clips by the edge's own detector, tracker and crop
rule and embedded by the edge's encoder (:mod:`semcom.bench.fidelity_data`). Every codec (f32,
f16, int8, PCA+PQ codes of several sizes) is then measured on them
(:mod:`sim.recall_metrics`): bytes per code and per RoI message, class precision@10
over other tracks, same-track recall@10 at least 1 s apart, 10-recall@10 and 1-recall@10
against f32, and each figure's ratio to f32. Codebooks are fitted on some clips and measured on
the others (:mod:`semcom.bench.fidelity_run`). ``bench codec`` stays the quick synthetic check.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from edge.encoder_options import encoder_model_options
from semcom.bench.fidelity_run import (
    ROI_MESSAGE,
    Queries,
    SplitError,
    as_rows,
    counts,
    describe_folds,
    make_folds,
    run,
    targets,
    tracks_per_clip,
)

logger = logging.getLogger(__name__)

TEAM_DETECTOR = "/work/shared/data/weights/yolo11n_int8_coco_320.onnx"


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise click.BadParameter(f"{what} must be positive, got {text!r}")
    return values


def _table(doc: dict[str, Any]) -> str:
    w = max([8, *(len(str(r["codec"])) for r in doc["results"])])
    head = (
        f"{'codec':{w}} {'code B':>7} {'B/RoI':>6} {'class p@10':>10} {'ratio':>6} "
        f"{'track r@10':>10} {'ratio':>6} {'R10@10':>7} {'R1@10':>6}"
    )
    lines = [head]
    for r in doc["results"]:
        lines.append(
            f"{r['codec']:{w}} {r['code_bytes']:>7} {r['bytes_per_roi']:>6.0f} "
            f"{r['class_p10']:>10.4f} {r['class_p10_ratio'] or 0:>6.3f} "
            f"{r['track_r10']:>10.4f} {r['track_r10_ratio'] or 0:>6.3f} "
            f"{r['recall_10_at_10']:>7.3f} {r['recall_1_at_10']:>6.3f}"
        )
    lines.append("")
    for t in doc["targets"]:
        lines.append(f"{'met ' if t['met'] else 'MISS'}  {t['target']}: {t['codec']} {t['value']}")
    return "\n".join(lines)


@click.command("fidelity")
@click.option(
    "--sources",
    multiple=True,
    required=True,
    help="Video file, or folder of video files (repeatable); each file is one clip.",
)
@click.option(
    "--detector",
    default=TEAM_DETECTOR,
    show_default=True,
    envvar="SEMCOM_BENCH_DETECTOR",
    help="Detector model (.onnx/.pt/.engine), run with the edge's tracker.",
)
@click.option("--imgsz", type=click.IntRange(32, 4096), default=320, show_default=True)
@click.option(
    "--frame-stride",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Detect and track every N-th frame of each clip.",
)
@click.option(
    "--max-frames", type=click.IntRange(1), help="Read at most this many frames of each clip."
)
@click.option("--encoder", default="mobilenetv2_100", show_default=True, help="timm model name.")
@encoder_model_options
@click.option(
    "--random-init-encoder",
    is_flag=True,
    help="Untrained encoder weights (the report says pretrained: false).",
)
@click.option(
    "--encoder-runtime",
    type=click.Choice(["torch", "onnx", "onnx-int8"]),
    default="torch",
    show_default=True,
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Encoder threads (torch); more than the idle cores slows it down (measured here: 2 "
    "threads on 2 busy cores ran MobileNetV2 6x slower than 1).",
)
@click.option(
    "--pq-m",
    default="8,16,32,64",
    show_default=True,
    help="PQ code sizes in bytes (comma-separated; '' for none).",
)
@click.option(
    "--fit-clips",
    default="",
    help="Comma-separated clip file names to fit codebooks on, measuring on the others "
    "[default: leave-one-clip-out].",
)
@click.option(
    "--codebook",
    "codebooks",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="Also measure this codebook (semcom codec fit) on every fold as it is (repeatable); "
    "it must not have been fitted on the measured clips.",
)
@click.option(
    "--queries",
    type=click.Choice(["decoded", "f32"]),
    default="decoded",
    show_default=True,
    help="Query vectors: decoded like the index (a stored sighting searched against the "
    "others), or the encoder's f32 output (a fresh crop searched against the index).",
)
@click.option(
    "--gap-s",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Same-track recall: the other sighting is at least this far from the query (s).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the extracted sample here and reuse it while nothing that shapes it changed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def command(
    sources: tuple[str, ...],
    detector: str,
    imgsz: int,
    frame_stride: int,
    max_frames: int | None,
    encoder: str,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    random_init_encoder: bool,
    encoder_runtime: str,
    threads: int,
    pq_m: str,
    fit_clips: str,
    codebooks: tuple[Path, ...],
    queries: str,
    gap_s: float,
    seed: int,
    cache: Path | None,
    as_json: bool,
) -> None:
    """Codec fidelity on real crops: class precision@10, same-track recall@10, recall vs f32."""
    from edge.config import DetectorConfig, TimmEncoderConfig
    from edge.errors import EdgeError
    from semcom.bench.fidelity_data import ExtractSpec, expand_sources, extract
    from shared.errors import EncoderModelError, ProtocolError
    from shared.pq import load_codebook

    ms = _ints(pq_m, "--pq-m")
    try:
        given = []
        for path in codebooks:
            book = load_codebook(path)
            given.append((f"{path.name} ({book.codec_id})", book))
        spec = ExtractSpec(
            sources=expand_sources(sources),
            detector=DetectorConfig(model=detector, imgsz=imgsz),
            encoder=TimmEncoderConfig(
                name=encoder,
                model_kwargs=model_kwargs,
                preprocess=encoder_preprocess,
                weights=encoder_weights,
                random_init=random_init_encoder,
                runtime=encoder_runtime,
                threads=threads,
            ),
            frame_stride=frame_stride,
            max_frames=max_frames,
        )
        start = time.perf_counter()
        sample, cached = extract(spec, cache)
        extract_s = time.perf_counter() - start
        per_clip = [int((sample.clips == i).sum()) for i in range(len(sample.clip_names))]
        folds = make_folds(sample.clip_names, per_clip, [c for c in fit_clips.split(",") if c])
        start = time.perf_counter()
        results = run(
            sample,
            folds,
            pq_m=ms,
            queries=queries_type(queries),
            gap_us=round(gap_s * 1e6),
            seed=seed,
            say=lambda s: click.echo(f"... {s}", err=True),
            codebooks=given,
        )
        measure_s = time.perf_counter() - start
    except (EdgeError, EncoderModelError, ProtocolError, SplitError) as exc:
        raise click.ClickException(str(exc)) from None
    rows = as_rows(results)
    meta = sample.meta
    doc: dict[str, Any] = {
        "encoder": meta["encoder"],
        "pretrained": meta["pretrained"],
        "crops": len(sample),
        "tracks": len(set(sample.tracks.tolist())),
        "results": rows,
        "targets": targets(rows),
        "dim": meta["dim"],
        "encoder_weights": meta["weights"],
        "model_kwargs": meta.get("model_kwargs", {}),
        "encoder_runtime": meta["runtime"],
        "detector": meta["detector"],
        "imgsz": meta["imgsz"],
        "frame_stride": meta["frame_stride"],
        "crop_scale": meta["crop_scale"],
        "frames": meta["frames"],
        "untracked_boxes_left_out": meta["untracked_boxes"],
        "clips": {
            name: {"crops": n, "tracks": t}
            for (name, t), n in zip(tracks_per_clip(sample).items(), per_clip, strict=True)
        },
        "split": describe_folds(folds, sample.clip_names),
        "query_vectors": queries,
        "same_track_gap_s": gap_s,
        **counts(results),
        "roi_message": ROI_MESSAGE,
        "sample_from_cache": cached,
        "extract_s": round(extract_s, 1),
        "measure_s": round(measure_s, 1),
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    weights = "pretrained" if doc["pretrained"] else "RANDOM-INIT (embeddings carry no meaning)"
    click.echo(
        f"{doc['crops']} crops of {doc['tracks']} tracks from {len(doc['clips'])} clips; "
        f"{doc['encoder']} {doc['dim']}-d ({weights}); detector {doc['detector']} @ "
        f"{doc['imgsz']}, every {doc['frame_stride']} frame(s)\nsplit: {doc['split']}\n"
        f"queries: {queries}; same-track gap {gap_s} s ({doc['track_queries_skipped']} of "
        f"{doc['queries']} queries have no sighting that far and are skipped)\n"
        f"RoI message: {ROI_MESSAGE}\n"
    )
    click.echo(_table(doc))


def queries_type(value: str) -> Queries:
    return "f32" if value == "f32" else "decoded"
