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
    help="Dimensions kept by the projection (multiple of --m) [default: the best of m, 2m, 4m "
    "by held-out recall@10].",
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
    """
    from cloud.codebook_fit import fit_codebook
    from shared.vectors import load_embeddings

    if out.suffix != ".npz":
        raise click.BadParameter("the codebook file must end in .npz", param_hint="--out")
    if (embeddings is None) == (not sources):
        raise click.UsageError("give either EMBEDDINGS or --source (repeatable), not both")
    try:
        if embeddings is not None:
            x, origin = load_embeddings(embeddings), str(embeddings)
        else:
            x, origin = _embed_sources(sources, edge_config, every, max_per_source, encoder_flags)
        book, report = fit_codebook(
            x,
            m=m,
            reduced_dim=reduced_dim,
            seed=seed,
            kmeans_iters=kmeans_iters,
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


def _embed_sources(
    sources: tuple[str, ...],
    edge_config: Path | None,
    every: int,
    max_per_source: int,
    flags: dict[str, Any],
) -> tuple[np.ndarray, str]:
    """Embeddings of every source's crops, made as the edge makes them (edge/sample.py)."""
    from pydantic import ValidationError

    from edge.cli import flag_overrides
    from edge.config import load_config
    from edge.errors import EdgeError
    from edge.sample import collect_embeddings
    from shared.settings import describe_errors

    parts, described = [], []
    for source in sources:
        overrides = flag_overrides(source=source, **flags)
        overrides["source.pace"] = False
        overrides["source.loop"] = False
        try:
            config = load_config(edge_config, overrides)
            vectors, description = collect_embeddings(config, max_per_source, every)
        except ValidationError as exc:
            raise click.ClickException(describe_errors(exc.errors())) from None
        except EdgeError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(description, err=True)
        parts.append(vectors)
        described.append(description)
    x = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    if not len(x):
        raise click.ClickException("no detections in the sources: nothing to fit on")
    return x, "; ".join(described)


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
