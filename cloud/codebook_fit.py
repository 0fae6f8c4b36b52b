"""Fit a reduced-dimension PQ codebook with faiss, in the :class:`shared.pq.PQCodec` format.

faiss trains (``faiss.PCAMatrix`` with a random rotation, then ``faiss.ProductQuantizer``);
the result is converted to a :class:`~shared.pq.PQCodec`, so ``shared`` (which may not import
faiss) encodes and decodes it on both ends. The conversion is exact: faiss's PCA maps
``x -> A x + b`` with ``b = -A mean`` and orthonormal rows of ``A``, which is the PQCodec's
``(x - mean) @ P`` with ``P = A^T``; the PQ centroids are copied as they are, and both pick the
nearest centroid by squared L2 (a test checks the codes agree with faiss's own).

Used by the cloud's auto-fitter (:mod:`cloud.codebooks_auto`) and ``semcom codec fit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.errors import CodecError
from shared.pq import CENTROIDS, PQCodec, knn_recall, nn_in_top_k

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FitReport:
    """What a fit measured on held-out samples (never on the training ones)."""

    recall_at_10: float  # 10-recall@10 of decoded codes against the exact vectors
    nn_in_top_10: float  # 1-recall@10
    cosine_mean: float  # mean cosine of a decoded vector to its original
    train: int
    held_out: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "heldout_recall_at_10": round(self.recall_at_10, 4),
            "heldout_nn_in_top_10": round(self.nn_in_top_10, 4),
            "heldout_cosine_mean": round(self.cosine_mean, 6),
            "train_samples": self.train,
            "heldout_samples": self.held_out,
            "fit_seconds": round(self.seconds, 2),
        }


def unit_rows(x: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rows scaled to unit L2 norm (the edge sends unit vectors)."""
    v = np.asarray(x, dtype=np.float32)
    return np.asarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12), np.float32)


def train_faiss(
    x: NDArray[np.float32], m: int, reduced_dim: int, seed: int = 0, kmeans_iters: int = 25
) -> tuple[Any, Any]:
    """faiss's PCA (eigen power 0, random rotation) and PQ(m x 8 bits), trained on ``x``."""
    import faiss  # local: a heavy native library, only where codebooks are fitted

    n, dim = x.shape
    if reduced_dim % m or not m <= reduced_dim <= dim:
        raise CodecError(f"reduced_dim {reduced_dim} must be a multiple of m={m} in [{m}, {dim}]")
    if n < CENTROIDS:
        raise CodecError(f"need at least {CENTROIDS} samples to fit, got {n}")
    xs = np.ascontiguousarray(x, dtype=np.float32)
    pca = faiss.PCAMatrix(dim, reduced_dim, 0.0, True)
    pca.train(xs)
    pq = faiss.ProductQuantizer(reduced_dim, m, 8)
    pq.cp.seed = int(seed)
    pq.cp.niter = int(kmeans_iters)
    pq.cp.max_points_per_centroid = 1 << 20  # train on every sample (no silent subsampling)
    pq.cp.min_points_per_centroid = 1  # a few thousand samples are enough here: no warning
    pq.train(np.ascontiguousarray(pca.apply(xs), dtype=np.float32))
    return pca, pq


def to_pqcodec(pca: Any, pq: Any, info: dict[str, Any] | None = None) -> PQCodec:
    """The :class:`PQCodec` that encodes and decodes as faiss's ``pca`` then ``pq`` do."""
    import faiss

    d, dim = int(pca.d_out), int(pca.d_in)
    a = faiss.vector_to_array(pca.A).reshape(d, dim)
    mean = faiss.vector_to_array(pca.mean).astype(np.float32)
    centroids = faiss.vector_to_array(pq.centroids).reshape(int(pq.M), CENTROIDS, int(pq.dsub))
    return PQCodec(
        mean,
        np.ascontiguousarray(a.T, dtype=np.float32),
        np.ascontiguousarray(centroids, dtype=np.float32),
        dict(info or {}),
    )


def faiss_pq(
    x: NDArray[np.float32], m: int, reduced_dim: int, seed: int = 0, kmeans_iters: int = 25
) -> PQCodec:
    """Train faiss's PCA (with random rotation) + PQ(m x 8 bits) on ``x`` and convert it."""
    pca, pq = train_faiss(x, m, reduced_dim, seed, kmeans_iters)
    info = {
        "trainer": "faiss",
        "samples": len(x),
        "input_dim": x.shape[1],
        "reduced_dim": reduced_dim,
    }
    return to_pqcodec(pca, pq, info)


def fit_codebook(
    samples: NDArray[np.floating],
    *,
    m: int = 32,
    reduced_dim: int | None = None,
    held_out: float = 0.1,
    max_train: int = 50_000,
    seed: int = 0,
    kmeans_iters: int = 25,
    progress: Progress | None = None,
) -> tuple[PQCodec, FitReport]:
    """Fit an ``m``-byte codebook on unit-normalised ``samples`` and measure it on a held-out
    share. ``reduced_dim`` (a multiple of m) is picked from m, 2m and 4m by held-out
    10-recall@10 when not given. Deterministic for the same samples and seed."""
    started = time.monotonic()
    say = progress or (lambda _text: None)
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise CodecError(f"samples must be finite (n, dim) floats, got shape {x.shape}")
    x = unit_rows(x)
    n, dim = x.shape
    n_held = max(20, int(n * held_out))
    if n - n_held < CENTROIDS:
        raise CodecError(
            f"need at least {CENTROIDS} samples to fit (and {n_held} more held out), got {n}"
        )
    if m > dim:
        raise CodecError(f"m={m} sub-quantisers need at least {m} dims, got {dim}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    held, train = x[order[:n_held]], x[order[n_held:]]
    if len(train) > max_train:
        train = train[:max_train]
    if len(train) < CENTROIDS:
        raise CodecError(
            f"need at least {CENTROIDS} samples to fit (and {n_held} more held out), got {n}"
        )
    n_query = max(10, len(held) // 10)
    queries, base = held[:n_query], held[n_query:]

    def measure(book: PQCodec) -> float:
        return knn_recall(base, book.decode(book.encode(base)), queries)

    selection: dict[str, float] = {}
    candidates = [reduced_dim] if reduced_dim else [d for d in (m, 2 * m, 4 * m) if d <= dim]
    best: PQCodec | None = None
    for d in candidates:
        say(f"fitting PCA {dim}->{d} + PQ{m}x8 on {len(train)} samples")
        book = faiss_pq(train, m, d, seed, kmeans_iters)
        selection[str(d)] = round(measure(book), 4)
        if best is None or selection[str(d)] > selection[str(best.reduced_dim)]:
            best = book
    assert best is not None
    rebuilt = best.decode(best.encode(base))
    cos = (unit_rows(rebuilt) * base).sum(axis=1)
    report = FitReport(
        recall_at_10=selection[str(best.reduced_dim)],
        nn_in_top_10=nn_in_top_k(base, rebuilt, queries),
        cosine_mean=float(cos.mean()),
        train=len(train),
        held_out=len(held),
        seconds=time.monotonic() - started,
    )
    best.info.update(
        seed=int(seed), kmeans_iters=int(kmeans_iters), selection=selection, **report.as_dict()
    )
    return best, report
