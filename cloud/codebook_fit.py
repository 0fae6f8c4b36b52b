"""Fit a reduced-dimension PQ codebook with faiss, in the :class:`shared.pq.PQCodec` format.

faiss trains (``faiss.PCAMatrix`` with a random rotation, then ``faiss.ProductQuantizer``);
the result is converted to a :class:`~shared.pq.PQCodec`, so ``shared`` (which may not import
faiss) encodes and decodes it on both ends. The conversion is exact: faiss's PCA maps
``x -> A x + b`` with ``b = -A mean`` and orthonormal rows of ``A``, which is the PQCodec's
``(x - mean) @ P`` with ``P = A^T``; the PQ centroids are copied as they are, and both pick the
nearest centroid by squared L2 (a test checks the codes agree with faiss's own).

Optionally faiss's OPQ rotation ``R`` (``faiss.OPQMatrix``, trained on the PCA's output) sits
between the two; it folds into the same projection: ``P = (R A)^T``.

How the projection is chosen: given the samples' track ids (and capture times), whole tracks are
held out and each candidate (reduced dim m, 2m, 4m, 8m; PCA + PQ, and PCA + OPQ + PQ) is scored
by held-out *same-track recall@10* (:mod:`shared.track_recall`: a fresh f32 sighting searched
against the decoded codes finds another sighting of its track >= 1 s away among its 10 nearest);
the smallest projection within 0.005 of the best wins. Without track ids: random rows are held
out and m, 2m, 4m are scored by 10-recall@10 against f32, as before.

Used by the cloud's auto-fitter (:mod:`cloud.codebooks_auto`) and ``semcom codec fit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from shared.errors import CodecError
from shared.pq import CENTROIDS, PQCodec, knn_recall, nn_in_top_k
from shared.track_recall import SECOND_US, same_track_recall

Progress = Callable[[str], None]

#: scores within this of the best are ties: the smaller projection wins
NEAR_TIE: Final = 0.005
#: below this many measurable held-out queries, same-track recall is too noisy to choose by
MIN_TRACK_QUERIES: Final = 20
CRITERION_KNN: Final = "10-recall@10"
#: samples the OPQ rotation is trained on at most (faiss subsamples; the PQ after it sees all):
#: its 50 rounds of PQ training are the slow part of a fit (~2 min for 5,700 samples and 64
#: sub-quantisers on one core), linear in this
OPQ_MAX_TRAIN: Final = 10_000
CRITERION_TRACK: Final = "same-track recall@10"


@dataclass(frozen=True)
class FitReport:
    """What a fit measured on held-out samples (never on the training ones)."""

    recall_at_10: float  # 10-recall@10 of decoded codes against the exact vectors
    nn_in_top_10: float  # 1-recall@10
    cosine_mean: float  # mean cosine of a decoded vector to its original
    train: int
    held_out: int
    seconds: float
    criterion: str = CRITERION_KNN  # what chose the projection
    track_recall_at_10: float | None = None  # same-track recall@10 (when tracks were given)
    f32_track_recall_at_10: float | None = None  # ... of the f32 vectors themselves
    track_queries: int | None = None  # held-out sightings with another of their track far away

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "heldout_recall_at_10": round(self.recall_at_10, 4),
            "heldout_nn_in_top_10": round(self.nn_in_top_10, 4),
            "heldout_cosine_mean": round(self.cosine_mean, 6),
            "train_samples": self.train,
            "heldout_samples": self.held_out,
            "fit_seconds": round(self.seconds, 2),
            "criterion": self.criterion,
        }
        if self.track_recall_at_10 is not None:
            out["heldout_track_recall_at_10"] = round(self.track_recall_at_10, 4)
        if self.f32_track_recall_at_10 is not None:
            out["heldout_f32_track_recall_at_10"] = round(self.f32_track_recall_at_10, 4)
        if self.track_queries is not None:
            out["heldout_track_queries"] = self.track_queries
        return out


def unit_rows(x: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rows scaled to unit L2 norm (the edge sends unit vectors)."""
    v = np.asarray(x, dtype=np.float32)
    return np.asarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12), np.float32)


def train_pca(x: NDArray[np.float32], m: int, reduced_dim: int) -> Any:
    """faiss's PCA (eigen power 0, random rotation) to ``reduced_dim``, trained on ``x``."""
    import faiss  # local: a heavy native library, only where codebooks are fitted

    n, dim = x.shape
    if reduced_dim % m or not m <= reduced_dim <= dim:
        raise CodecError(f"reduced_dim {reduced_dim} must be a multiple of m={m} in [{m}, {dim}]")
    if n < CENTROIDS:
        raise CodecError(f"need at least {CENTROIDS} samples to fit, got {n}")
    pca = faiss.PCAMatrix(dim, reduced_dim, 0.0, True)
    pca.train(np.ascontiguousarray(x, dtype=np.float32))
    return pca


def train_faiss(
    x: NDArray[np.float32], m: int, reduced_dim: int, seed: int = 0, kmeans_iters: int = 25
) -> tuple[Any, Any]:
    """faiss's PCA (eigen power 0, random rotation) and PQ(m x 8 bits), trained on ``x``."""
    import faiss  # local: a heavy native library, only where codebooks are fitted

    pca = train_pca(x, m, reduced_dim)
    xs = np.ascontiguousarray(x, dtype=np.float32)
    pq = faiss.ProductQuantizer(reduced_dim, m, 8)
    pq.cp.seed = int(seed)
    pq.cp.niter = int(kmeans_iters)
    pq.cp.max_points_per_centroid = 1 << 20  # train on every sample (no silent subsampling)
    pq.cp.min_points_per_centroid = 1  # a few thousand samples are enough here: no warning
    pq.train(np.ascontiguousarray(pca.apply(xs), dtype=np.float32))
    return pca, pq


def train_opq(
    x: NDArray[np.float32], pca: Any, m: int, seed: int = 0, kmeans_iters: int = 25
) -> tuple[Any, Any]:
    """faiss's OPQ rotation trained on ``pca``'s output of ``x``, and PQ(m x 8 bits) trained
    on the rotated vectors."""
    import faiss

    d = int(pca.d_out)
    y = np.ascontiguousarray(pca.apply(np.ascontiguousarray(x, dtype=np.float32)), np.float32)
    opq = faiss.OPQMatrix(d, m)
    opq.verbose = False
    opq.max_train_points = OPQ_MAX_TRAIN
    inner = faiss.ProductQuantizer(d, m, 8)  # the PQ OPQ alternates with: no sample warning
    inner.cp.min_points_per_centroid = 1
    inner.cp.seed = int(seed)
    opq.pq = inner
    opq.train(y)
    opq.pq = None  # ``inner`` is freed with this frame: no dangling pointer
    pq = faiss.ProductQuantizer(d, m, 8)
    pq.cp.seed = int(seed)
    pq.cp.niter = int(kmeans_iters)
    pq.cp.max_points_per_centroid = 1 << 20
    pq.cp.min_points_per_centroid = 1
    pq.train(np.ascontiguousarray(opq.apply(y), dtype=np.float32))
    return opq, pq


def to_pqcodec(
    pca: Any, pq: Any, info: dict[str, Any] | None = None, opq: Any | None = None
) -> PQCodec:
    """The :class:`PQCodec` that encodes and decodes as faiss's ``pca`` (then ``opq``, when
    given) then ``pq`` do."""
    import faiss

    d, dim = int(pca.d_out), int(pca.d_in)
    a = faiss.vector_to_array(pca.A).reshape(d, dim)
    if opq is not None:  # y = R (A x + b): the rotation folds into the projection
        r = faiss.vector_to_array(opq.A).reshape(int(opq.d_out), int(opq.d_in))
        a = r.astype(np.float64) @ a.astype(np.float64)
    mean = faiss.vector_to_array(pca.mean).astype(np.float32)
    centroids = faiss.vector_to_array(pq.centroids).reshape(int(pq.M), CENTROIDS, int(pq.dsub))
    return PQCodec(
        mean,
        np.ascontiguousarray(a.T, dtype=np.float32),
        np.ascontiguousarray(centroids, dtype=np.float32),
        dict(info or {}),
    )


def faiss_pq(
    x: NDArray[np.float32],
    m: int,
    reduced_dim: int,
    seed: int = 0,
    kmeans_iters: int = 25,
    opq: bool = False,
) -> PQCodec:
    """Train faiss's PCA (with random rotation), OPQ when asked, and PQ(m x 8 bits) on ``x``,
    and convert them."""
    rotation = None
    if opq:
        pca = train_pca(x, m, reduced_dim)
        rotation, pq = train_opq(x, pca, m, seed, kmeans_iters)
    else:
        pca, pq = train_faiss(x, m, reduced_dim, seed, kmeans_iters)
    info: dict[str, Any] = {
        "trainer": "faiss",
        "samples": len(x),
        "input_dim": x.shape[1],
        "reduced_dim": reduced_dim,
    }
    if opq:
        info["projection"] = "pca+opq"
    return to_pqcodec(pca, pq, info, rotation)


def fit_codebook(
    samples: NDArray[np.floating],
    *,
    m: int = 32,
    reduced_dim: int | None = None,
    held_out: float = 0.1,
    max_train: int = 50_000,
    seed: int = 0,
    kmeans_iters: int = 25,
    tracks: NDArray[np.integer] | None = None,
    times_us: NDArray[np.integer] | None = None,
    opq: bool | None = None,
    gap_us: int = SECOND_US,
    progress: Progress | None = None,
) -> tuple[PQCodec, FitReport]:
    """Fit an ``m``-byte codebook on unit-normalised ``samples`` and measure it on a held-out
    share. Deterministic for the same samples and seed.

    Without ``tracks``: random rows are held out and ``reduced_dim`` (a multiple of m) is picked
    from m, 2m and 4m by held-out 10-recall@10 when not given. With ``tracks`` (one id per
    sample; ``times_us`` their capture times, optional): whole tracks are held out and the
    projection is picked from m, 2m, 4m, 8m (or ``reduced_dim``) x (PCA, PCA + OPQ) by held-out
    same-track recall@10 of f32 queries against the decoded codes, the smallest within
    ``NEAR_TIE`` of the best. ``opq``: consider OPQ (None: only when tracks are given)."""
    started = time.monotonic()
    say = progress or (lambda _text: None)
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise CodecError(f"samples must be finite (n, dim) floats, got shape {x.shape}")
    x = unit_rows(x)
    n, dim = x.shape
    t, ts = _labels(n, tracks, times_us)
    n_held = max(20, int(n * held_out))
    if n - n_held < CENTROIDS:
        raise CodecError(
            f"need at least {CENTROIDS} samples to fit (and {n_held} more held out), got {n}"
        )
    if m > dim:
        raise CodecError(f"m={m} sub-quantisers need at least {m} dims, got {dim}")
    rng = np.random.default_rng(seed)
    if t is None:
        order = rng.permutation(n)
        held_rows, train_rows = order[:n_held], order[n_held:]
    else:
        held_rows, train_rows = _split_by_track(t, n_held, rng)
    held, train = x[held_rows], x[train_rows]
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

    criterion, f32_track, track_queries = CRITERION_KNN, None, None
    if t is not None:
        ceiling = same_track_recall(held, held, t[held_rows], _rows(ts, held_rows), gap_us)
        if ceiling.measured >= MIN_TRACK_QUERIES:
            criterion, f32_track, track_queries = CRITERION_TRACK, ceiling.recall, ceiling.measured
        else:
            say(
                f"only {ceiling.measured} held-out sightings have another of their track "
                f">= {gap_us / 1e6:g} s away: choosing by {CRITERION_KNN}"
            )

    def track_measure(book: PQCodec) -> float:
        assert t is not None
        stored = book.decode(book.encode(held))
        return same_track_recall(held, stored, t[held_rows], _rows(ts, held_rows), gap_us).recall

    by_track = criterion == CRITERION_TRACK
    if reduced_dim:
        dims = [reduced_dim]
    else:
        dims = [d for d in (m, 2 * m, 4 * m, *((8 * m,) if by_track else ())) if d <= dim]
    variants = [False, True] if (opq if opq is not None else t is not None) else [False]
    selection: dict[str, float] = {}
    books: dict[str, PQCodec] = {}
    for d in dims:
        for rotate in variants:
            key = f"opq{d}" if rotate else str(d)
            name = "PCA + OPQ" if rotate else "PCA"
            say(f"fitting {name} {dim}->{d} + PQ{m}x8 on {len(train)} samples")
            book = faiss_pq(train, m, d, seed, kmeans_iters, opq=rotate)
            books[key] = book
            selection[key] = round(track_measure(book) if by_track else measure(book), 4)
    chosen = _choose(selection, NEAR_TIE if by_track else 0.0)
    best = books[chosen]
    rebuilt = best.decode(best.encode(base))
    cos = (unit_rows(rebuilt) * base).sum(axis=1)
    report = FitReport(
        recall_at_10=measure(best) if by_track else selection[chosen],
        nn_in_top_10=nn_in_top_k(base, rebuilt, queries),
        cosine_mean=float(cos.mean()),
        train=len(train),
        held_out=len(held),
        seconds=time.monotonic() - started,
        criterion=criterion,
        track_recall_at_10=selection[chosen] if by_track else None,
        f32_track_recall_at_10=f32_track,
        track_queries=track_queries,
    )
    best.info.update(
        seed=int(seed),
        kmeans_iters=int(kmeans_iters),
        selection=selection,
        chosen=chosen,
        **report.as_dict(),
    )
    return best, report


def _labels(
    n: int, tracks: NDArray[np.integer] | None, times_us: NDArray[np.integer] | None
) -> tuple[NDArray[np.int64] | None, NDArray[np.int64] | None]:
    """The samples' track ids and capture times as int64 arrays, checked against ``n``."""
    if tracks is None:
        if times_us is not None:
            raise CodecError("times_us were given without tracks: give both, or neither")
        return None, None
    t = np.asarray(tracks)
    if t.shape != (n,) or not np.issubdtype(t.dtype, np.integer):
        raise CodecError(
            f"tracks must be {n} integer ids (one per sample), got {t.dtype} {t.shape}"
        )
    if times_us is None:
        return t.astype(np.int64), None
    ts = np.asarray(times_us)
    if ts.shape != (n,) or not np.issubdtype(ts.dtype, np.integer):
        raise CodecError(
            f"times_us must be {n} integer capture times (us, one per sample), got "
            f"{ts.dtype} {ts.shape}"
        )
    return t.astype(np.int64), ts.astype(np.int64)


def _rows(a: NDArray[np.int64] | None, rows: NDArray[np.intp]) -> NDArray[np.int64] | None:
    return None if a is None else a[rows]


def _split_by_track(
    tracks: NDArray[np.int64], n_held: int, rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(held-out rows, training rows): whole tracks, in random order, until at least
    ``n_held`` rows are held out; both shuffled (the first held-out rows are the 10-recall@10
    queries: not one track's sightings)."""
    ids, counts = np.unique(tracks, return_counts=True)
    order = rng.permutation(len(ids))
    taken = np.searchsorted(np.cumsum(counts[order]), n_held) + 1
    held = np.isin(tracks, ids[order[:taken]])
    return rng.permutation(np.flatnonzero(held)), rng.permutation(np.flatnonzero(~held))


def _choose(selection: dict[str, float], near_tie: float) -> str:
    """The first candidate (smallest projection first) within ``near_tie`` of the best score."""
    best = max(selection.values())
    return next(k for k, v in selection.items() if v >= best - near_tie)
