"""``semcom codec``: fit, inspect and train the artefacts both ends must share."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from shared.errors import ProtocolError


@click.group()
def codec() -> None:
    """Embedding codebooks and zstd dictionaries shared by edge and cloud."""


@codec.command()
@click.argument("embeddings", type=click.Path(exists=True, dir_okay=False, path_type=Path))
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
@click.option("--kmeans-iters", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option(
    "--normalize/--no-normalize",
    default=True,
    show_default=True,
    help="L2-normalise samples first (the edge sends unit vectors).",
)
@click.option("--seed", type=int, default=0, show_default=True)
def fit(
    embeddings: Path,
    out: Path,
    m: int,
    reduced_dim: int | None,
    kmeans_iters: int,
    normalize: bool,
    seed: int,
) -> None:
    """Fit a reduced-dimension product-quantised codebook on sample EMBEDDINGS.

    EMBEDDINGS is a .npy (n, dim) array or a .npz with an 'embeddings' array, ideally thousands
    of embeddings of crops from the cameras the codebook will serve. 10 % are held out to report
    the reconstruction quality.
    """
    from shared.pq import fit_pq
    from shared.vectors import load_embeddings

    if out.suffix != ".npz":
        raise click.BadParameter("the codebook file must end in .npz", param_hint="--out")
    try:
        x = load_embeddings(embeddings)
        if normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(x))
        held = order[: max(1, len(x) // 10)]
        train = x[order[len(held) :]]

        def progress(stage: str, i: int, total: int) -> None:
            click.echo(f"\r{stage} {i}/{total}", nl=(i == total), err=True)

        book = fit_pq(
            train,
            m=m,
            reduced_dim=reduced_dim,
            kmeans_iters=kmeans_iters,
            seed=seed,
            progress=progress,
        )
        rebuilt = book.decode(book.encode(x[held]))
        cos = (rebuilt * x[held]).sum(1) / np.maximum(
            np.linalg.norm(rebuilt, axis=1) * np.linalg.norm(x[held], axis=1), 1e-12
        )
        book.info.update(
            source=str(embeddings),
            normalized=normalize,
            heldout_cosine_mean=round(float(cos.mean()), 6),
        )
        book.save(out)
    except ProtocolError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"wrote {out}: {book.codec_id}, dim {book.dim} -> {book.reduced_dim} -> {book.code_bytes} "
        f"bytes, explained variance {book.info['explained_variance']:.3f}, held-out cosine "
        f"{cos.mean():.4f}, content hash {book.content_hash.hex()[:16]}"
    )


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
