"""The faiss calls of the faiss backend: building, training, filling and searching indexes.

Every faiss index here uses inner product on unit vectors (cosine) and *positions* as ids
(see :mod:`cloud.index.columns`). The columns' :class:`~cloud.index.vector_store.VectorStore`
holds every vector once, as float16; a structure adds only what it needs beyond it:

- ``flat``: nothing. A search is :func:`exact` on the store: faiss's SIMD scan of it with the
  candidates as a selector when they are many, their rows gathered and scored when few.
- ``ivf``: ``IndexIVFScalarQuantizer`` with 8-bit codes (``QT_8bit``, per-dimension ranges
  trained with the centroids; 1 byte a dimension) and a flat coarse quantiser; removal is faiss
  ``remove_ids``. The probed lists give ``refine_factor x k`` candidates by their 8-bit
  scores, and those are re-ranked by their exact scores from the store (:func:`refine`), so
  the 8-bit rounding changes which candidates are found, never a reported score. Inserting
  costs one quantiser search per vector (1M x 384 into 1024 lists: ~5 s on two cores).
- ``hnsw``: ``IndexHNSWSQ`` (float16 vectors in the graph's storage, a second copy), ids
  implicit; faiss cannot remove from it, so removed rows stay in the graph and are excluded by
  a selector until a compaction rebuilds it. Insertion is slow (~1.3k vectors/s at 100k x 384
  on two cores): an explicit option, never the default.

Per 768-d vector: Flat ~1.6 KB, IVF ~2.4 KB, HNSW ~3.4 KB (float32 twice, before: ~6.9 KB).
Indexes saved by earlier versions (float32 segments, ``IndexIVFFlat``, ``IndexHNSWFlat``) still
load: an IVF gets 8-bit lists (its 8-bit ranges trained on a sample at load), a saved HNSW
graph is kept as it is until its next rebuild.

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


SQ8: Final = faiss.ScalarQuantizer.QT_8bit


def new_hnsw(dim: int, settings: IndexSettings) -> Any:
    index = faiss.IndexHNSWSQ(dim, FP16, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = settings.hnsw_ef_construction
    index.hnsw.efSearch = settings.hnsw_ef_search
    return index


def _new_ivf(quantizer: Any, dim: int, nlist: int) -> Any:
    # 8-bit codes of the vectors themselves (not of residuals from their centroid): one set of
    # per-dimension ranges for every list, trained on the sample the centroids are.
    return faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, SQ8, faiss.METRIC_INNER_PRODUCT, False
    )


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


def trained_empty(index: Any, cols: Columns, seed: int) -> Any:
    """An empty 8-bit IVF index with the same (trained) quantiser; the lists are not copied.

    An IVF saved by an earlier version (float32 lists, no 8-bit ranges) gets its ranges
    trained here on a sample of ``cols`` (the centroids are kept)."""
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))  # read_index gives IndexIVF
    quantizer = faiss.clone_index(ivf.quantizer)
    out = _new_ivf(quantizer, ivf.d, ivf.nlist)
    out.own_fields = True
    quantizer.this.disown()
    if isinstance(ivf, faiss.IndexIVFScalarQuantizer) and ivf.sq.qtype == SQ8:
        out.sq.trained = ivf.sq.trained
        out.is_trained = True
    else:
        live = np.flatnonzero(cols.alive)
        want = min(len(live), TRAIN_POINTS_PER_LIST * ivf.nlist)
        sample = np.sort(np.random.default_rng(seed).choice(live, size=want, replace=False))
        out.train(np.ascontiguousarray(cols.vectors[sample], dtype=np.float32))
    return out


def nlist_of(index: Any) -> int:
    if index is None or kind_of(index) != "ivf":
        return 0
    return int(faiss.extract_index_ivf(index).nlist)


def kind_of(index: Any) -> Structure:
    """The structure of a faiss index; ``None`` (no faiss index) is Flat."""
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    return "flat"


def fill(index: Any, cols: Columns) -> None:
    """Add every stored row (IVF: every live row) under its position (a fresh index)."""
    if index is None:
        return
    ivf = kind_of(index) == "ivf"
    for start in range(0, cols.n, _ADD_CHUNK):
        stop = min(cols.n, start + _ADD_CHUNK)
        chunk = cols.store.range(start, stop)
        if not ivf:
            index.add(chunk)
            continue
        live = np.flatnonzero(cols.alive[start:stop])
        index.add_with_ids(np.ascontiguousarray(chunk[live]), (live + start).astype(np.int64))


def assign(index: Any, vectors: F32) -> I64 | None:
    """IVF list of each row, computed before taking the write lock (the slow part of an add)."""
    if index is None or kind_of(index) != "ivf":
        return None
    _, lists = index.quantizer.search(vectors, 1)
    return np.ascontiguousarray(lists.ravel(), dtype=np.int64)


def insert(index: Any, vectors: F32, first: int, lists: I64 | None) -> None:
    """Append rows as positions first, first+1, ... (under the write lock)."""
    if index is None:
        return
    if lists is None:
        index.add(vectors)
        return
    ids = np.arange(first, first + len(vectors), dtype=np.int64)
    index.add_core(
        len(vectors), faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(lists)
    )


def remove(index: Any, positions: I64) -> None:
    if len(positions) and index is not None and kind_of(index) == "ivf":
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


DENSE_SHARE: Final = 8  # candidates >= n / 8: scan the store with a selector, not gather


def exact(queries: F32, k: int, cand: Candidates, cols: Columns) -> tuple[F32, I64]:
    """Top ``k`` of the candidates by their exact (float16-stored) scores.

    Many candidates: faiss's SIMD scan of the whole store, restricted by the candidates'
    selector. Few: their rows gathered and scored (cost ~ candidates, not the store's size).
    Returns scores and positions, best first; -1 positions where fewer than ``k`` exist."""
    if cand.count == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    if cand.count * DENSE_SHARE >= cols.n:
        dense = Prepared(Plan("exact", cand.count, 1.0), "flat", cand, cols.n)
        return cols.store.search(queries, min(k, cand.count), dense.params)
    return cols.store.scores_at(queries, k, cand.positions(), cols.n)


def refine_k(k: int, factor: int) -> int:
    """Candidates to fetch by 8-bit score for ``k`` hits re-ranked exactly."""
    return k * factor


def refine(queries: F32, k: int, found: I64, cols: Columns) -> tuple[F32, I64]:
    """Re-rank each query's candidates (positions, -1 for none) by exact scores; top ``k``."""
    view = cols.vectors  # read under the index's read lock: no append can move it
    valid = found >= 0
    scores = np.full(found.shape, -np.inf, np.float32)
    for i in range(len(queries)):  # a handful of queries, refine_factor x k rows each
        rows = view[found[i, valid[i]]].astype(np.float32)
        scores[i, valid[i]] = np.einsum("md,d->m", rows, queries[i])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    positions = np.take_along_axis(found, order, axis=1)
    positions[~np.isfinite(best)] = -1
    return best, np.ascontiguousarray(positions)
