"""``semcom codec``: fit, inspect and train the artefacts both ends must share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge.encoder_options import encoder_model_options
from shared.errors import ProtocolError


@click.group()
def codec() -> None:
    """Embedding codebooks and zstd dictionaries shared by edge and cloud."""


@codec.command()
@click.argument(
    "embeddings", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Codebook file to write (.npz).",
)
@click.option(
    "--m",
    "m",
    type=click.IntRange(1, 256),
    default=32,
    show_default=True,
    help="Sub-quantisers = bytes per code.",
)
@click.option(
    "--reduced-dim",
    type=click.IntRange(1),
    default=None,
    help="Dimensions kept by the projection (multiple of --m) [default: with --source, the "
    "best of m, 2m, 4m, 8m by held-out same-track recall@10; from EMBEDDINGS (no track ids), "
    "the best of m, 2m, 4m by held-out 10-recall@10].",
)
@click.option(
    "--opq/--no-opq",
    default=None,
    help="Also consider faiss's OPQ rotation after the PCA (chosen only where it scores "
    "better) [default: with --source (track ids), yes; from EMBEDDINGS, no].",
)
@click.option(
    "--kmeans-iters",
    type=click.IntRange(1, 200),
    default=25,
    show_default=True,
    help="k-means iterations of each sub-quantiser (faiss).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--source",
    "-s",
    "sources",
    multiple=True,
    help="Fit on the crops of this video (repeatable) instead of EMBEDDINGS, embedded with "
    "the edge's own detector, crop rule and encoder (the flags below, as `semcom edge run`).",
)
@click.option(
    "--edge-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Edge YAML config for --source (its detector, crop and encoder; flags win).",
)
@click.option("--detector", "-d", help="Detector for --source (name or model file).")
@click.option("--imgsz", type=int, help="Detector input size (px).")
@click.option("--conf", type=float, help="Detector confidence threshold.")
@click.option("--encoder", "-e", help="Encoder for --source: timm name, .onnx, open_clip:...")
@encoder_model_options
@click.option(
    "--random-init-encoder", is_flag=True, default=None, help="DEVELOPMENT ONLY: untrained."
)
@click.option(
    "--encoder-runtime", type=click.Choice(["auto", "torch", "onnx", "onnx-int8"]), default=None
)
@click.option(
    "--every",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="--source: embed every N-th frame.",
)
@click.option(
    "--max-per-source",
    type=click.IntRange(1),
    default=20_000,
    show_default=True,
    help="--source: at most this many embeddings of each video.",
)
def fit(
    embeddings: Path | None,
    out: Path,
    m: int,
    reduced_dim: int | None,
    opq: bool | None,
    kmeans_iters: int,
    seed: int,
    sources: tuple[str, ...],
    edge_config: Path | None,
    every: int,
    max_per_source: int,
    **encoder_flags: Any,
) -> None:
    """Fit a reduced-dimension product-quantised codebook (faiss PCA + PQ, as the cloud's
    auto-fitter does) on sample EMBEDDINGS, or on the crops of --source videos.

    EMBEDDINGS is a .npy (n, dim) array or a .npz with an 'embeddings' array (`semcom edge
    embed-sample`), ideally thousands of embeddings of crops from the cameras the codebook will
    serve. 10 % are held out to report the recall@10 and cosine it keeps.

    With --source the tracker's ids are known: whole tracks are held out and the projection is
    chosen by same-track recall@10 (a fresh f32 sighting finds another sighting of its track
    >= 1 s away among the 10 nearest decoded codes). EMBEDDINGS carry no track ids: the
    projection is chosen by 10-recall@10 against f32.
    """
    from cloud.codebook_fit import fit_codebook
    from shared.vectors import load_embeddings

    if out.suffix != ".npz":
        raise click.BadParameter("the codebook file must end in .npz", param_hint="--out")
    if (embeddings is None) == (not sources):
        raise click.UsageError("give either EMBEDDINGS or --source (repeatable), not both")
    try:
        tracks = times = None
        if embeddings is not None:
            x, origin = load_embeddings(embeddings), str(embeddings)
        else:
            x, tracks, times, origin = _embed_sources(
                sources, edge_config, every, max_per_source, encoder_flags
            )
        book, report = fit_codebook(
            x,
            m=m,
            reduced_dim=reduced_dim,
            seed=seed,
            kmeans_iters=kmeans_iters,
            tracks=tracks,
            times_us=times,
            opq=opq,
            progress=lambda text: click.echo(text, err=True),
        )
        book.info.update(source=origin, normalized=True)
        book.save(out)
    except ProtocolError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"wrote {out}: {book.codec_id}, dim {book.dim} -> {book.reduced_dim} -> {book.code_bytes} "
        f"bytes, held-out recall@10 {report.recall_at_10:.4f}, 1-recall@10 "
        f"{report.nn_in_top_10:.4f}, cosine {report.cosine_mean:.4f} ({report.held_out} held "
        f"out of {report.train + report.held_out}), content hash {book.content_hash.hex()[:16]}"
    )
    click.echo(_selection_line(book.info, tracks is not None))


def _selection_line(info: dict[str, Any], had_tracks: bool) -> str:
    """How the projection was chosen: the criterion, every candidate's score, the choice."""
    criterion = str(info.get("criterion", "10-recall@10"))
    scores = info.get("selection") or {}
    table = ", ".join(
        f"{'PCA+OPQ' if k.startswith('opq') else 'PCA'} {k.removeprefix('opq')}: {v:.4f}"
        for k, v in scores.items()
    )
    if not had_tracks:
        why = f"no track ids: picked by {criterion}"
    elif criterion != "same-track recall@10":
        why = f"too few held-out tracks with sightings >= 1 s apart: picked by {criterion}"
    else:
        f32 = info.get("heldout_f32_track_recall_at_10")
        queries = info.get("heldout_track_queries")
        why = (
            f"picked by held-out {criterion} ({queries} queries, f32 {f32}; smallest within "
            "0.005 of the best)"
        )
    return f"projection {info.get('chosen')} {why}; candidates {table}"


def _embed_sources(
    sources: tuple[str, ...],
    edge_config: Path | None,
    every: int,
    max_per_source: int,
    flags: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Embeddings of every source's crops, made as the edge makes them (edge/sample.py), with
    track ids unique across the sources (an untracked crop is a track of its own) and capture
    times."""
    from pydantic import ValidationError

    from edge.cli import flag_overrides
    from edge.config import load_config
    from edge.errors import EdgeError
    from edge.sample import collect_sample
    from shared.settings import describe_errors

    parts, described = [], []
    tracks: list[np.ndarray] = []
    times: list[np.ndarray] = []
    for source in sources:
        overrides = flag_overrides(source=source, **flags)
        overrides["source.pace"] = False
        overrides["source.loop"] = False
        try:
            config = load_config(edge_config, overrides)
            sample = collect_sample(config, max_per_source, every)
        except ValidationError as exc:
            raise click.ClickException(describe_errors(exc.errors())) from None
        except EdgeError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(sample.description, err=True)
        parts.append(sample.vectors)
        described.append(sample.description)
        tracks.append(global_track_ids(len(tracks), sample.track_ids))
        times.append(sample.times_us)
    x = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    if not len(x):
        raise click.ClickException("no detections in the sources: nothing to fit on")
    t = np.concatenate(tracks)
    untracked = t < 0
    t[untracked] = -1 - np.arange(int(untracked.sum()))  # each a track of its own
    return x, t, np.concatenate(times), "; ".join(described)


def global_track_ids(source: int, local: np.ndarray) -> np.ndarray:
    """Tracker ids of one source made unique across sources (``source`` in the high 32 bits);
    untracked crops (id 0) become -1, numbered apart by the caller."""
    ids = np.asarray(local, np.int64)
    out: np.ndarray = np.where(ids > 0, ((source + 1) << 32) | ids, -1).astype(np.int64)
    return out


@codec.command()
@click.argument("spec")
@click.option(
    "--dim",
    type=click.IntRange(1),
    default=768,
    show_default=True,
    help="Dimension, for built-in codec ids.",
)
def info(spec: str, dim: int) -> None:
    """Describe a codec: a built-in id (f32, f16, int8) or a codebook .npz."""
    from shared.pq import load_codebook
    from shared.vectors import VectorCodec, create_codec, fingerprint

    try:
        c: VectorCodec = load_codebook(spec) if spec.endswith(".npz") else create_codec(spec, dim)
    except ProtocolError as exc:
        raise click.ClickException(str(exc)) from None
    doc = {
        "codec": c.codec_id,
        "dim": c.dim,
        "code_bytes": c.code_bytes,
        "content_hash": c.content_hash.hex(),
        "fingerprint": f"{fingerprint(c):#010x}",
    }
    doc.update(getattr(c, "info", {}))
    click.echo(json.dumps(doc, indent=2))


@codec.command("train-dict")
@click.argument("messages", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--size",
    type=click.IntRange(256, 1 << 20),
    default=16_384,
    show_default=True,
    help="Dictionary size in bytes.",
)
def train_dict(messages: Path, out: Path, size: int) -> None:
    """Train a zstd dictionary on the bodies of a recorded message file (edge --out)."""
    from shared.codec import PREFIX_BYTES, decode, encode
    from shared.compression import Compressor, train_dictionary
    from shared.framing import read_frames

    raw = Compressor(min_bytes=1 << 30)
    try:
        with open(messages, "rb") as fh:
            bodies = [encode(decode(f), raw)[PREFIX_BYTES:] for f in read_frames(fh)]
        if len(bodies) < 100:
            raise click.ClickException(f"need at least 100 messages to train, got {len(bodies)}")
        d = train_dictionary(bodies, size)
    except ProtocolError as exc:
        raise click.ClickException(str(exc)) from None
    out.write_bytes(d.data)
    click.echo(
        f"wrote {out}: zstd dictionary id {d.dict_id}, {len(d.data)} bytes, "
        f"from {len(bodies)} messages"
    )
