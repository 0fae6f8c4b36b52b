"""``semcom bench codec``: bytes per RoI message, speed and fidelity of each embedding codec.

For every codec and dim it reports the size of a complete :class:`Embedding` frame (header, box,
class, confidence, track id, timestamps, code), encode and decode rates of whole messages
(vector codec + frame codec, one message at a time, as the edge and the ingest path run them),
the mean cosine similarity of decoded to original vectors, and two recalls (queries are held-out
originals, neighbours by inner product of unit vectors, the base decoded from its codes):

- ``recall_at_10``: 10-recall@10, the share of each query's 10 true nearest neighbours that are
  among the 10 nearest in the decoded base (the ann-benchmarks measure; the stricter one);
- ``recall_1_at_10``: 1-recall@10, the share of queries whose true nearest neighbour is among
  the 10 nearest in the decoded base (the measure of the product-quantisation literature,
  Jegou et al. 2011);
- ``projection_recall_at_10`` (PQ codes only): 10-recall@10 of the base after the code's
  projection alone, unquantised: the ceiling any quantiser on that projection can reach, which
  separates the loss of the dimension reduction from the loss of the quantisation.

PQ codebooks are fitted on a training split disjoint from base and queries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from shared import synthetic
from shared.codec import decode, encode
from shared.errors import ProtocolError
from shared.geometry import Box
from shared.messages import Embedding, EmitReason, Envelope
from shared.pq import PQCodec, fit_pq, knn_recall, nn_in_top_k
from shared.vectors import VectorCodec, create_codec, fingerprint, load_embeddings


@dataclass(frozen=True)
class Sample:
    """Embeddings to measure on, split into train (PQ fitting), base and queries."""

    description: str
    train: np.ndarray
    base: np.ndarray
    queries: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])


@dataclass(frozen=True)
class Result:
    codec: str
    dim: int
    code_bytes: int
    bytes_per_roi: int
    encode_per_s: float
    decode_per_s: float
    cosine_mean: float
    recall_at_10: float
    recall_1_at_10: float
    projection_recall_at_10: float | None
    sample: str


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), np.float32)


def synthetic_sample(dim: int, n_train: int, n_base: int, n_query: int, seed: int) -> Sample:
    spec = synthetic.ClusteredSpec(dim=dim)
    train, base, queries = synthetic.split((n_train, n_base, n_query), spec, seed=seed)
    return Sample(synthetic.describe(spec), train, base, queries)


def file_sample(path: Path, n_query: int, seed: int) -> Sample:
    """Split a file of embeddings: queries, then half of the rest to train, half as the base."""
    x = _unit(load_embeddings(path))
    description = f"file {path.name}: {len(x)} x {x.shape[1]} embeddings, unit-normalised"
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if "description" in data.files:
                description += f" ({data['description']})"
    if len(x) < 2 * 256 + n_query:
        raise click.ClickException(f"{path} has {len(x)} embeddings; need at least {512 + n_query}")
    order = np.random.default_rng(seed).permutation(len(x))
    q, rest = order[:n_query], order[n_query:]
    half = len(rest) // 2
    return Sample(description, x[rest[:half]], x[rest[half:]], x[q])


def roi_envelope(codec: VectorCodec, code: bytes, i: int, t0_us: int) -> Envelope:
    """A realistic RoI message: the fields the edge sends with every embedding."""
    return Envelope(
        edge_id="edge-01",
        seq=1_000_000 + i,
        capture_ts_us=t0_us + 40_000 * i,
        send_ts_us=t0_us + 40_000 * i + 35_000,
        message=Embedding(
            camera="cam-01",
            track_id=1_000 + i % 500,
            reason=EmitReason.FIRST_SIGHT,
            class_id=2,
            confidence=0.8125,
            box=Box(0.31, 0.42, 0.37, 0.51),
            codec=fingerprint(codec),
            code=code,
        ),
    )


def _rate(n: int, fn: Callable[[int], object], min_seconds: float = 0.3) -> float:
    done, start = 0, time.perf_counter()
    while True:
        for i in range(n):
            fn(i)
        done += n
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def measure(codec: VectorCodec, sample: Sample, n_speed: int = 500) -> Result:
    codes = codec.encode(sample.base)
    decoded = codec.decode(codes)
    cos = (decoded * sample.base).sum(1) / np.maximum(np.linalg.norm(decoded, axis=1), 1e-12)
    t0 = int(time.time() * 1e6)
    vectors = sample.base[:n_speed]
    frames = [encode(roi_envelope(codec, codes[i].tobytes(), i, t0)) for i in range(len(vectors))]
    sizes = [len(f) for f in frames]

    def enc(i: int) -> object:
        code = codec.encode(vectors[i]).tobytes()
        return encode(roi_envelope(codec, code, i, t0))

    def dec(i: int) -> object:
        env = decode(frames[i])
        assert isinstance(env.message, Embedding)
        return codec.decode(env.message.code)

    return Result(
        codec=codec.codec_id,
        dim=sample.dim,
        code_bytes=codec.code_bytes,
        bytes_per_roi=round(float(np.mean(sizes))),
        encode_per_s=round(_rate(len(vectors), enc), 1),
        decode_per_s=round(_rate(len(vectors), dec), 1),
        cosine_mean=round(float(cos.mean()), 6),
        recall_at_10=round(knn_recall(sample.base, decoded, sample.queries, 10), 4),
        recall_1_at_10=round(nn_in_top_k(sample.base, decoded, sample.queries, 10), 4),
        projection_recall_at_10=_projection_recall(codec, sample),
        sample=sample.description,
    )


def _projection_recall(codec: VectorCodec, sample: Sample) -> float | None:
    if not isinstance(codec, PQCodec):
        return None
    projected = codec.project(sample.base) @ codec.projection.T + codec.mean
    return round(knn_recall(sample.base, projected, sample.queries, 10), 4)


def run(
    samples: Sequence[Sample],
    *,
    pq_m: Sequence[int] = (32,),
    seed: int = 0,
    on_progress: Callable[[str], None] = lambda s: None,
) -> list[Result]:
    results: list[Result] = []
    for sample in samples:
        codecs: list[VectorCodec] = [create_codec(c, sample.dim) for c in ("f32", "f16", "int8")]
        for m in pq_m:
            on_progress(f"fitting pq{m}x8 on {len(sample.train)} x {sample.dim}")
            codecs.append(fit_pq(sample.train, m=m, seed=seed))
        for codec in codecs:
            on_progress(f"measuring {codec.codec_id} at dim {sample.dim}")
            results.append(measure(codec, sample))
    return results


def _table(results: list[Result]) -> str:
    head = (
        f"{'codec':8} {'dim':>4} {'code B':>7} {'B/RoI':>6} {'enc/s':>9} {'dec/s':>9} "
        f"{'cosine':>8} {'R10@10':>7} {'R1@10':>6} {'ceiling':>7}"
    )
    rows = [
        f"{r.codec:8} {r.dim:>4} {r.code_bytes:>7} {r.bytes_per_roi:>6} {r.encode_per_s:>9.0f} "
        f"{r.decode_per_s:>9.0f} {r.cosine_mean:>8.4f} {r.recall_at_10:>7.3f} "
        f"{r.recall_1_at_10:>6.3f} "
        + (f"{r.projection_recall_at_10:>7.3f}" if r.projection_recall_at_10 is not None else "")
        for r in results
    ]
    return "\n".join([head, *rows])


@click.command("codec")
@click.option(
    "--embeddings",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Measure on these embeddings (.npy or .npz; repeatable) instead of synthetic ones.",
)
@click.option(
    "--dims",
    default="192,384,768",
    show_default=True,
    help="Dims of the synthetic samples (ignored with --embeddings).",
)
@click.option("--n-base", type=click.IntRange(100), default=10_000, show_default=True)
@click.option("--n-train", type=click.IntRange(256), default=10_000, show_default=True)
@click.option("--n-query", type=click.IntRange(1), default=300, show_default=True)
@click.option(
    "--pq-m", default="32", show_default=True, help="Comma-separated PQ code sizes (bytes)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def command(
    files: tuple[Path, ...],
    dims: str,
    n_base: int,
    n_train: int,
    n_query: int,
    pq_m: str,
    seed: int,
    as_json: bool,
) -> None:
    """Bytes per RoI message, speed, cosine and recall@10 of every embedding codec."""
    try:
        ms = [int(v) for v in pq_m.split(",")]
        if files:
            samples = [file_sample(p, n_query, seed) for p in files]
        else:
            samples = [
                synthetic_sample(int(d), n_train, n_base, n_query, seed) for d in dims.split(",")
            ]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        results = run(
            samples,
            pq_m=ms,
            seed=seed,
            on_progress=lambda s: click.echo(f"... {s}", err=True),
        )
    except ProtocolError as exc:
        raise click.ClickException(str(exc)) from None
    described = "; ".join(dict.fromkeys(s.description for s in samples))
    if as_json:
        doc: dict[str, Any] = {"sample": described, "results": [asdict(r) for r in results]}
        click.echo(json.dumps(doc))
    else:
        click.echo(f"sample: {described}\n")
        click.echo(_table(results))
