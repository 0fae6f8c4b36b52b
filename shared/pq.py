"""Reduced-dimension product-quantised codes (in the spirit of LeanVec, Tepper et al. 2023).

Encoding a vector x of ``dim`` floats:

1. centre and project: y = (x - mean) @ P, with P a (dim, d) matrix of orthonormal columns:
   the top-d principal axes followed by a random rotation, so each sub-space carries a similar
   share of the variance;
2. split y into ``m`` sub-vectors of d/m dims and replace each by the index of its nearest of
   256 centroids (one byte).

The code is ``m`` bytes; decoding concatenates the centroids and maps back with P^T. Fitting
needs only numpy (``shared`` may not depend on faiss or scikit-learn): PCA by an eigen-
decomposition of the covariance and Lloyd's k-means with k-means++ seeding.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np
from numpy.typing import NDArray

from shared.errors import CodebookError, CodecError
from shared.vectors import F32Array, U8Array, as_codes, as_matrix

CENTROIDS: Final = 256  # one byte per sub-vector
FORMAT_VERSION: Final = 1

Progress = Callable[[str, int, int], None]


def _nearest(y: F32Array, centroids: F32Array) -> NDArray[np.intp]:
    """Index of the nearest centroid (squared L2) for each row of y."""
    d2 = (centroids * centroids).sum(axis=1)[None, :] - 2.0 * (y @ centroids.T)
    return np.asarray(d2.argmin(axis=1))


@dataclass(frozen=True, eq=False)
class PQCodec:
    """A fitted reduced-dimension product quantiser; see the module docstring."""

    mean: F32Array  # (dim,)
    projection: F32Array  # (dim, d), orthonormal columns
    centroids: F32Array  # (m, 256, d / m)
    info: dict[str, Any] = field(default_factory=dict)  # how it was fitted; not hashed
    content_hash: bytes = b""
    _centroid_norms: F32Array = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        m, k, sub = self.centroids.shape
        dim, d = self.projection.shape
        if self.mean.shape != (dim,) or k != CENTROIDS or m * sub != d:
            raise CodebookError(
                "<memory>",
                f"inconsistent shapes: mean {self.mean.shape}, projection {self.projection.shape}, "
                f"centroids {self.centroids.shape}",
            )
        object.__setattr__(self, "content_hash", self._hash())
        object.__setattr__(self, "_centroid_norms", (self.centroids**2).sum(axis=2))

    @property
    def codec_id(self) -> str:
        return f"pq{self.m}x8"

    @property
    def dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def reduced_dim(self) -> int:
        return int(self.projection.shape[1])

    @property
    def m(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def code_bytes(self) -> int:
        return self.m

    def _hash(self) -> bytes:
        h = hashlib.sha256(f"semcom-codec/pq/v{FORMAT_VERSION}/".encode())
        for arr in (self.mean, self.projection, self.centroids):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr, dtype="<f4").tobytes())
        return h.digest()

    def project(self, vectors: NDArray[np.floating] | NDArray[np.integer]) -> F32Array:
        x = as_matrix(vectors, self.dim)
        return np.asarray((x - self.mean) @ self.projection, dtype=np.float32)

    def encode(self, vectors: NDArray[np.floating] | NDArray[np.integer]) -> U8Array:
        y = self.project(vectors).reshape(-1, self.m, self.reduced_dim // self.m)
        # Squared distances to every centroid of every sub-space at once: (n, m, 256).
        d2 = self._centroid_norms[None] - 2.0 * np.einsum("nms,mks->nmk", y, self.centroids)
        return np.asarray(d2.argmin(axis=2), dtype=np.uint8)

    def decode(self, codes: U8Array | bytes) -> F32Array:
        c = as_codes(codes, self.code_bytes)
        y = self.centroids[np.arange(self.m)[None, :], c.astype(np.intp)]  # (n, m, sub)
        y = y.reshape(len(c), self.reduced_dim)
        return np.asarray(y @ self.projection.T + self.mean, dtype=np.float32)

    def save(self, path: str | Path | BinaryIO) -> None:
        """Write the codebook as ``.npz`` (plain arrays, no pickles) with its hash recorded, to
        a file path or a binary file object (the cloud stores and sends the bytes)."""
        meta = {
            "format": FORMAT_VERSION,
            "codec_id": self.codec_id,
            "content_hash": self.content_hash.hex(),
            "info": self.info,
        }
        with contextlib.ExitStack() as stack:
            fh = (
                path if not isinstance(path, (str, Path)) else stack.enter_context(open(path, "wb"))
            )
            np.savez(
                fh,
                mean=self.mean,
                projection=self.projection,
                centroids=self.centroids,
                meta=np.array(json.dumps(meta, sort_keys=True)),
            )

    def to_bytes(self) -> bytes:
        """The ``.npz`` file :meth:`save` writes, as bytes."""
        buf = io.BytesIO()
        self.save(buf)
        return buf.getvalue()

    def __repr__(self) -> str:
        return (
            f"PQCodec(id={self.codec_id}, dim={self.dim}, reduced_dim={self.reduced_dim}, "
            f"hash={self.content_hash.hex()[:12]})"
        )


_PQ_ID: Final = re.compile(r"pq([1-9][0-9]{0,3})x([1-9][0-9]?)")


def pq_code_bytes(codec_id: str) -> int:
    """Bytes per code of a product-quantised codec named ``pqMxB`` (M sub-quantisers of B bits
    each: M*B/8 bytes; ``pq32x8`` is 32). Strict: anything else, or M*B not a whole number of
    bytes, raises :class:`CodecError` naming the id and the form expected."""
    match = _PQ_ID.fullmatch(codec_id)
    if match is None:
        raise CodecError(
            f"codec id {codec_id!r} does not name a code size: expected pqMxB (M sub-quantisers "
            "of B bits, e.g. pq32x8)"
        )
    m, bits = int(match.group(1)), int(match.group(2))
    if (m * bits) % 8:
        raise CodecError(f"codec id {codec_id!r}: {m} x {bits} bits is not a whole number of bytes")
    return m * bits // 8


def load_codebook(path: str | Path | BinaryIO) -> PQCodec:
    """Load a codebook written by :meth:`PQCodec.save` (a path or a binary file object),
    verifying its recorded hash."""
    p = str(path) if isinstance(path, (str, Path)) else "<bytes>"
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {
                k: np.asarray(data[k], dtype=np.float32)
                for k in ("mean", "projection", "centroids")
            }
    except FileNotFoundError:
        raise CodebookError(p, "file not found (fit one with `semcom codec fit`)") from None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise CodebookError(p, f"not a semcom codebook: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CodebookError(p, f"unsupported codebook format {meta!r:.80}")
    try:
        codec = PQCodec(
            arrays["mean"], arrays["projection"], arrays["centroids"], dict(meta.get("info") or {})
        )
    except CodebookError as exc:
        raise CodebookError(p, exc.reason) from None
    if codec.content_hash.hex() != meta.get("content_hash"):
        raise CodebookError(p, "content hash does not match the arrays (corrupt file?)")
    return codec


def _kmeans(x: F32Array, k: int, iters: int, rng: np.random.Generator) -> F32Array:
    """Lloyd's k-means with k-means++ seeding; empty clusters are re-seeded at far points."""
    n = len(x)
    c = np.empty((k, x.shape[1]), dtype=np.float32)
    c[0] = x[rng.integers(n)]
    d2 = ((x - c[0]) ** 2).sum(axis=1)
    for i in range(1, k):
        total = float(d2.sum())
        j = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        c[i] = x[j]
        d2 = np.minimum(d2, ((x - c[i]) ** 2).sum(axis=1))
    for _ in range(iters):
        assign = _nearest(x, c)
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros_like(c, dtype=np.float64)
        np.add.at(sums, assign, x)
        nonempty = counts > 0
        c[nonempty] = (sums[nonempty] / counts[nonempty, None]).astype(np.float32)
        if not nonempty.all():
            err = ((x - c[assign]) ** 2).sum(axis=1)
            far = np.argsort(err)[::-1][: int((~nonempty).sum())]
            c[~nonempty] = x[far]
    return np.asarray(c, dtype=np.float32)


def _top_k(queries: F32Array, base: F32Array, k: int) -> NDArray[np.intp]:
    scores = queries @ base.T
    part = np.argpartition(-scores, min(k, base.shape[0] - 1), axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.asarray(np.take_along_axis(part, order, axis=1))


def knn_recall(base: F32Array, approx: F32Array, queries: F32Array, k: int = 10) -> float:
    """k-recall@k: the mean share of each query's k nearest base vectors (inner product) that
    are also among its k nearest when the base is replaced by ``approx``."""
    truth, found = _top_k(queries, base, k), _top_k(queries, approx, k)
    hits = (truth[:, :, None] == found[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean()) / k


def nn_in_top_k(base: F32Array, approx: F32Array, queries: F32Array, k: int = 10) -> float:
    """1-recall@k (Jegou et al. 2011): the share of queries whose true nearest base vector is
    among the k nearest when the base is replaced by ``approx``."""
    truth, found = _top_k(queries, base, 1), _top_k(queries, approx, k)
    return float((found == truth).any(axis=1).mean())


def fit_pq(
    samples: NDArray[np.floating],
    *,
    m: int = 32,
    reduced_dim: int | None = None,
    kmeans_iters: int = 20,
    max_train: int = 50_000,
    seed: int = 0,
    progress: Progress | None = None,
) -> PQCodec:
    """Fit a reduced-dimension product quantiser with ``m`` bytes per code.

    ``reduced_dim`` (a multiple of ``m``, at most the input dim) is chosen from m, 2m and 4m
    by 10-recall@10 on a held-out fifth of the samples when not given: how many dimensions
    pay off depends on how the variance of the embeddings is spread. Needs at least 256
    samples; thousands give better codebooks.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 2:
        raise CodecError(f"samples must be (n, dim), got shape {x.shape}")
    n, dim = x.shape
    x = as_matrix(x, dim)
    if n < CENTROIDS:
        raise CodecError(f"need at least {CENTROIDS} samples to fit, got {n}")
    if m > dim:
        raise CodecError(f"m={m} sub-quantisers need at least {m} dims, got {dim}")
    rng = np.random.default_rng(seed)
    if n > max_train:
        x = x[rng.choice(n, max_train, replace=False)]
    report = progress or (lambda stage, i, total: None)
    selection: dict[str, float] = {}
    if reduced_dim is None:
        reduced_dim, selection = _select_reduced_dim(x, m, kmeans_iters, seed, report)
    if reduced_dim % m or not m <= reduced_dim <= dim:
        raise CodecError(f"reduced_dim {reduced_dim} must be a multiple of m={m} in [{m}, {dim}]")
    codec = _fit(x, m, reduced_dim, kmeans_iters, np.random.default_rng(seed), report)
    codec.info.update(seed=int(seed), selection=selection)
    return codec


def _select_reduced_dim(
    x: F32Array, m: int, kmeans_iters: int, seed: int, report: Progress
) -> tuple[int, dict[str, float]]:
    dim = x.shape[1]
    candidates = [d for d in (m, 2 * m, 4 * m) if d <= dim]
    if len(candidates) == 1 or len(x) < 5 * CENTROIDS:
        return candidates[0], {}
    order = np.random.default_rng(seed + 1).permutation(len(x))
    held = x[order[: len(x) // 5]]
    train = x[order[len(x) // 5 :]]
    n_query = max(20, len(held) // 10)
    queries, base = held[:n_query], held[n_query:]
    scores: dict[str, float] = {}
    for d in candidates:
        codec = _fit(train, m, d, max(5, kmeans_iters // 2), np.random.default_rng(seed), report)
        scores[str(d)] = round(knn_recall(base, codec.decode(codec.encode(base)), queries), 4)
    best = max(candidates, key=lambda d: (scores[str(d)], -d))
    return best, scores


def _fit(
    x: F32Array, m: int, d: int, kmeans_iters: int, rng: np.random.Generator, report: Progress
) -> PQCodec:
    mean = x.mean(axis=0)
    xc = x - mean
    cov = (xc.T.astype(np.float64) @ xc) / len(xc)
    evals, evecs = np.linalg.eigh(cov)
    top = np.argsort(evals)[::-1][:d]
    # A random rotation spreads the variance of every principal axis over all sub-spaces
    # (Jegou et al. 2010); measured here it beats eigenvalue allocation by ~0.1 recall@10.
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    projection = (evecs[:, top] @ rotation).astype(np.float32)
    y = xc @ projection
    sub = d // m
    centroids = np.empty((m, CENTROIDS, sub), dtype=np.float32)
    for j in range(m):
        part = np.ascontiguousarray(y[:, j * sub : (j + 1) * sub])
        centroids[j] = _kmeans(part, CENTROIDS, kmeans_iters, rng)
        report(f"k-means d={d}", j + 1, m)
    info = {
        "samples": len(x),
        "input_dim": int(x.shape[1]),
        "reduced_dim": int(d),
        "explained_variance": round(float(evals[top].sum() / max(evals.sum(), 1e-12)), 6),
        "kmeans_iters": int(kmeans_iters),
    }
    return PQCodec(mean.astype(np.float32), projection, centroids, info)
