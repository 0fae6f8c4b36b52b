"""The vectors of one index, each held once: a faiss float16 flat store, addressed by position.

A faiss ``IndexScalarQuantizer`` with ``QT_fp16`` codes: 2 bytes a dimension (half of float32),
exact for what the wire carries (the edge's ``f16`` codec; ``int8`` and PQ codes are coarser
than float16 rounding), scanned by faiss's SIMD kernels (no float32 copy, no BLAS). Position p
is row p, as in :mod:`cloud.index.columns`, which owns one store and shares it with its grown
copies: rows are only appended, under the index's write lock, so a reader holding the read lock
sees a fixed store. Numpy views of the rows (:meth:`VectorStore.view`) are for writers (saving,
training, compaction) and are valid until the next append.
"""

from __future__ import annotations

from typing import Any, Final

import faiss as _faiss
import numpy as np
from numpy.typing import NDArray

F16 = NDArray[np.float16]
F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

faiss: Any = _faiss  # partial type stubs (see faiss_ops)

_GATHER_CHUNK: Final = 8_192  # rows decoded to float32 at a time by scores_at


class VectorStore:
    """Unit vectors by position, float16; see the module docstring. Not thread-safe by itself."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.index = faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def nbytes(self) -> int:
        return len(self) * int(self.index.code_size)

    def add(self, vectors: NDArray[np.floating]) -> None:
        """Append rows: float16 ones as they are, others rounded to float16."""
        if not len(vectors):
            return
        if vectors.dtype == np.float16:
            codes = np.ascontiguousarray(vectors).view(np.uint8).reshape(len(vectors), -1)
            self.index.add_sa_codes(codes)
        else:
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def view(self, n: int) -> F16:
        """Rows 0..n-1 as a float16 array over the store's memory (no copy; see the docstring)."""
        if n == 0:
            return np.zeros((0, self.dim), np.float16)
        raw = faiss.rev_swig_ptr(self.index.codes.data(), n * int(self.index.code_size))
        return np.asarray(raw).view(np.float16).reshape(n, self.dim)

    def rows(self, positions: I64) -> F32:
        """The rows at ``positions``, decoded to float32."""
        if not len(positions):
            return np.zeros((0, self.dim), np.float32)
        return np.asarray(self.index.reconstruct_batch(positions), np.float32)

    def range(self, start: int, stop: int) -> F32:
        """Rows start..stop-1, decoded to float32."""
        return np.asarray(self.index.reconstruct_n(start, stop - start), np.float32)

    def search(self, queries: F32, k: int, params: Any) -> tuple[F32, I64]:
        """faiss's exhaustive scan (restricted by ``params``' selector when given)."""
        scores, positions = self.index.search(queries, k, params=params)
        return scores, positions

    def scores_at(self, queries: F32, k: int, positions: I64, n: int) -> tuple[F32, I64]:
        """Top ``k`` of ``positions`` (< n) by inner product: rows gathered a chunk at a time,
        widened to float32 and scored by faiss (no BLAS: one query is a handful of rows)."""
        nq = len(queries)
        k = min(k, len(positions))
        view = self.view(n)
        best_s = np.full((nq, k), -np.inf, np.float32)
        best_p = np.full((nq, k), -1, np.int64)
        for start in range(0, len(positions), _GATHER_CHUNK):
            chunk = positions[start : start + _GATHER_CHUNK]
            rows = view[chunk].astype(np.float32)
            m = min(k, len(chunk))
            scores = np.empty((nq, m), np.float32)
            at = np.empty((nq, m), np.int64)
            faiss.knn_inner_product(
                faiss.swig_ptr(queries),
                faiss.swig_ptr(rows),
                self.dim,
                nq,
                len(rows),
                m,
                faiss.swig_ptr(scores),
                faiss.swig_ptr(at),
            )
            both_s = np.concatenate((best_s, scores), axis=1)
            both_p = np.concatenate((best_p, chunk[at]), axis=1)
            top = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
            best_s = np.take_along_axis(both_s, top, axis=1)
            best_p = np.take_along_axis(both_p, top, axis=1)
        return np.ascontiguousarray(best_s, np.float32), np.ascontiguousarray(best_p)
