"""The faiss calls of the faiss backend: building, training, filling and searching indexes.

Every faiss index here uses inner product on unit vectors (cosine) and *positions* as ids
(see :mod:`cloud.index.columns`), and stores its vectors as float16 (faiss's scalar quantiser
``QT_fp16``: 2 bytes a dimension, half of float32; exact for the wire's ``f16`` codec, and
measured no slower to search than float32 here, as a scan is bound by memory). Three structures:

- ``flat``: ``IndexScalarQuantizer`` (fp16), exhaustive. Ids are implicit (0..n-1), so removed
  rows stay in it and are excluded by a selector until a compaction rebuilds it.
- ``ivf``: ``IndexIVFScalarQuantizer`` (fp16) with a flat coarse quantiser and ``nlist``
  lists; removal is faiss ``remove_ids``. Inserting costs one quantiser search per vector (1M
  x 384 into 1024 lists: ~5 s on two cores), which keeps ingest at tens of thousands of
  vectors per second.
- ``hnsw``: ``IndexHNSWSQ`` (fp16), ids implicit; faiss cannot remove from it, so removed rows
  stay in the graph and are excluded by a selector until a compaction rebuilds it. Insertion
  is slow (~1.3k vectors/s at 100k x 384 on two cores): an explicit option, never the default.

Indexes saved by earlier versions (``IndexFlatIP``, ``IndexIVFFlat``, ``IndexHNSWFlat``, float32)
still load and search; an IVF is converted to fp16 lists on load, a saved HNSW graph is kept
as it is until its next rebuild.

IVF sizing: ``nlist_for(n)`` is the power of two nearest to sqrt(n), which balances the
quantiser's cost (nlist dot products) against the lists' (nprobe x n / nlist), and at most
n / 39 so k-means has the 39 points per centroid faiss asks for. Training uses up to 64
points per list, 10 iterations, spherical k-means (centroids of unit vectors renormalised).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import faiss as _faiss
import numpy as np

from cloud.index.base import IndexSettings
from cloud.index.batch import F32, I64
from cloud.index.columns import F16, Candidates, Columns
from cloud.index.planner import Plan, Structure

MIN_POINTS_PER_LIST: Final = 39  # below this faiss warns that k-means lacks data
TRAIN_POINTS_PER_LIST: Final = 64
KMEANS_ITERATIONS: Final = 10
MAX_NLIST: Final = 65_536
_ADD_CHUNK: Final = 65_536  # rows per faiss add call when filling a new index
_EXACT_CHUNK: Final = 8_192  # candidate rows widened to float32 at a time by exact()

# faiss ships partial type stubs that lack much of its SWIG API (SearchParametersHNSW,
# knn_inner_products_by_idx, keyword constructors): use it untyped, behind this module.
faiss: Any = _faiss


def nlist_for(n: int) -> int:
    """The power of two p nearest to sqrt(n) in log scale (p^2 / 2 <= n < 2 p^2), capped."""
    want = 1
    while (2 * want) ** 2 <= 2 * n:
        want *= 2
    cap = max(1, n // MIN_POINTS_PER_LIST)
    while want > cap:
        want //= 2
    return max(1, min(want, MAX_NLIST))


FP16: Final = faiss.ScalarQuantizer.QT_fp16


def new_flat(dim: int) -> Any:
    return faiss.IndexScalarQuantizer(dim, FP16, faiss.METRIC_INNER_PRODUCT)


def new_hnsw(dim: int, settings: IndexSettings) -> Any:
    index = faiss.IndexHNSWSQ(dim, FP16, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = settings.hnsw_ef_construction
    index.hnsw.efSearch = settings.hnsw_ef_search
    return index


def _new_ivf(quantizer: Any, dim: int, nlist: int) -> Any:
    # The vectors themselves, not residuals from their centroid: float16 needs no training
    # and then holds exactly what the columns hold.
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, FP16, faiss.METRIC_INNER_PRODUCT, False
    )
    index.is_trained = bool(quantizer.is_trained and quantizer.ntotal == nlist)
    return index


def train_ivf(vectors: F16, rows: I64, nlist: int, seed: int) -> Any:
    """An empty IVF index trained on a random sample of ``vectors[rows]`` (unit rows)."""
    dim = vectors.shape[1]
    index = _new_ivf(faiss.IndexFlatIP(dim), dim, nlist)
    index.cp.niter = KMEANS_ITERATIONS
    index.cp.spherical = True
    index.cp.seed = seed
    index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
    want = min(len(rows), TRAIN_POINTS_PER_LIST * nlist)
    sample = np.sort(np.random.default_rng(seed).choice(rows, size=want, replace=False))
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    return index


def trained_empty(index: Any) -> Any:
    """An empty fp16 IVF index with the same (trained) quantiser; the lists are not copied.

    Also converts an IVF-Flat saved by an earlier version (float32 lists) to fp16 lists."""
    ivf = faiss.extract_index_ivf(index)
    quantizer = faiss.clone_index(ivf.quantizer)
    out = _new_ivf(quantizer, ivf.d, ivf.nlist)
    out.own_fields = True
    quantizer.this.disown()
    return out


def nlist_of(index: Any) -> int:
    if kind_of(index) != "ivf":
        return 0
    return int(faiss.extract_index_ivf(index).nlist)


def kind_of(index: Any) -> Structure:
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    return "flat"


def fill(index: Any, cols: Columns) -> None:
    """Add every stored row (IVF: every live row) under its position (a fresh index)."""
    ivf = kind_of(index) == "ivf"
    for start in range(0, cols.n, _ADD_CHUNK):
        stop = min(cols.n, start + _ADD_CHUNK)
        chunk = np.ascontiguousarray(cols.vectors[start:stop], dtype=np.float32)
        if not ivf:
            index.add(chunk)
            continue
        live = np.flatnonzero(cols.alive[start:stop])
        index.add_with_ids(np.ascontiguousarray(chunk[live]), (live + start).astype(np.int64))


def assign(index: Any, vectors: F32) -> I64 | None:
    """IVF list of each row, computed before taking the write lock (the slow part of an add)."""
    if kind_of(index) != "ivf":
        return None
    _, lists = index.quantizer.search(vectors, 1)
    return np.ascontiguousarray(lists.ravel(), dtype=np.int64)


def insert(index: Any, vectors: F32, first: int, lists: I64 | None) -> None:
    """Append rows as positions first, first+1, ... (under the write lock)."""
    if lists is None:
        index.add(vectors)
        return
    ids = np.arange(first, first + len(vectors), dtype=np.int64)
    index.add_core(
        len(vectors), faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(lists)
    )


def remove(index: Any, positions: I64) -> None:
    if len(positions) and kind_of(index) == "ivf":
        index.remove_ids(faiss.IDSelectorBatch(len(positions), faiss.swig_ptr(positions)))


Selector = Literal["none", "range", "bitmap"]


class Prepared:
    """A faiss search call ready to run: parameters, and the buffers they point into."""

    def __init__(self, plan: Plan, kind: Structure, cand: Candidates, n: int) -> None:
        self.plan = plan
        self.selector: Selector = "none"
        self._bitmap: np.ndarray | None = None
        sel: Any = None
        if cand.mask is not None:
            self._bitmap = cand.bitmap(n)
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(self._bitmap))
            self.selector = "bitmap"
        elif (cand.lo, cand.hi) != (0, n):
            sel = faiss.IDSelectorRange(cand.lo, cand.hi)
            self.selector = "range"
        self._sel = sel  # faiss keeps a raw pointer: hold the selector while params live
        if kind == "ivf":
            self.params: Any = faiss.SearchParametersIVF(sel=sel, nprobe=plan.nprobe)
        elif kind == "hnsw":
            self.params = faiss.SearchParametersHNSW(sel=sel, efSearch=plan.ef_search)
        else:
            self.params = faiss.SearchParameters(sel=sel) if sel is not None else None

    def search(self, index: Any, queries: F32, k: int) -> tuple[F32, I64]:
        scores, positions = index.search(queries, k, params=self.params)
        return scores, positions


def exact(queries: F32, k: int, positions: I64, storage: F16) -> tuple[F32, I64]:
    """Top ``k`` of ``positions`` by inner product with the stored (float16) rows.

    Rows are gathered and widened to float32 a chunk at a time (a BLAS product per chunk), so
    the temporary memory is bounded whatever the number of candidates. Returns scores and
    positions, best first, shaped (len(queries), min(k, len(positions)))."""
    nq = len(queries)
    k = min(k, len(positions))
    best_s = np.full((nq, k), -np.inf, np.float32)
    best_p = np.full((nq, k), -1, np.int64)
    for start in range(0, len(positions), _EXACT_CHUNK):
        chunk = positions[start : start + _EXACT_CHUNK]
        scores = queries @ storage[chunk].astype(np.float32).T
        both_s = np.concatenate((best_s, scores), axis=1)
        both_p = np.concatenate((best_p, np.broadcast_to(chunk, scores.shape)), axis=1)
        top = np.argpartition(-both_s, k - 1, axis=1)[:, :k] if k else both_s[:, :0]
        best_s = np.take_along_axis(both_s, top, axis=1)
        best_p = np.take_along_axis(both_p, top, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return (
        np.ascontiguousarray(np.take_along_axis(best_s, order, axis=1), dtype=np.float32),
        np.ascontiguousarray(np.take_along_axis(best_p, order, axis=1)),
    )
