"""The independent baseline of ``semcom bench index``: faiss used directly, filters applied after.

Why: a baseline that runs semcom's own planned faiss call measures only the wrapper. This one
shares nothing with :mod:`cloud.index` but the faiss library and the workload's vectors: it
is built here, from the float32 base rows, with faiss's own constructors and defaults.

- ``ivf`` (default): ``index_factory(dim, "IVF{nlist},Flat", METRIC_INNER_PRODUCT)`` with
  ``nlist = 4 sqrt(n)`` (the low end of faiss's guideline of 4-16 sqrt(n) lists below 10M
  vectors), trained on up to 64 points a list (faiss's k-means defaults otherwise), float32
  vectors in the lists: no quantisation error, every score exact. Built in 5-7 min at 1M x 384
  on two shared cores (4000 lists).
- ``hnsw``: ``IndexHNSWFlat(dim, 32, METRIC_INNER_PRODUCT)`` (faiss's efConstruction, 40);
  float32 vectors. Slow to build on two cores (1M x 384: tens of minutes).

Tuning (:func:`tune`): ``nprobe`` (``efSearch``) is raised along 1, 2, 4, ... until the
unfiltered recall@10 of the bench's queries against brute force reaches a target (semcom's
unfiltered recall in this run), then bisected between the last two rungs to the smallest
value that reaches it. Every value tried is kept with its recall.

Filtered search is **post-filtering** (:func:`post_filtered`), as a plain vector store queried
before a metadata filter does (Frigate's semantic search): the global top ``k' = factor x k``,
then the filter on their metadata, the first ``k`` that pass kept. A filter admitting a share
s of the vectors leaves about ``s x k'`` hits, so recall falls with s; the cost does not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import faiss as _faiss
import numpy as np

from semcom.bench import index_data as data

# faiss's stubs lack most of its SWIG API (index_factory's metric, extract_index_ivf, ...).
faiss: Any = _faiss

Kind = Literal["ivf", "hnsw"]
HNSW_M: Final = 32  # graph links a vector (faiss's usual choice at 100k-10M)
TRAIN_POINTS_PER_LIST: Final = 64  # k-means sample, points a list (faiss warns below 39)
MAX_EF_SEARCH: Final = 4096
ADD_CHUNK: Final = 100_000  # rows per faiss add call


@dataclass
class Baseline:
    """A faiss index over the base rows (faiss ids = base positions) and its search knob."""

    kind: Kind
    index: Any
    factory: str  # what was built, in faiss's index_factory notation
    build_seconds: float
    value: int = 1  # nprobe (IVF) or efSearch (HNSW)
    target: float | None = None  # unfiltered recall@10 the tuning aimed for
    reached: bool = False
    tuning: list[tuple[int, float]] = field(default_factory=list)  # (value, recall)

    @property
    def knob(self) -> str:
        return "nprobe" if self.kind == "ivf" else "efSearch"

    @property
    def max_value(self) -> int:
        if self.kind == "ivf":
            return int(faiss.extract_index_ivf(self.index).nlist)
        return MAX_EF_SEARCH

    def set(self, value: int) -> None:
        self.value = value
        if self.kind == "ivf":
            faiss.extract_index_ivf(self.index).nprobe = value
        else:
            self.index.hnsw.efSearch = value

    def search(self, queries: data.F32, k: int) -> data.I64:
        """Base positions of each query's top ``k`` (-1 pads), unfiltered."""
        _, positions = self.index.search(queries, k)
        return np.asarray(positions, np.int64)

    def describe(self, post_filter_factor: int, k: int) -> dict[str, object]:
        return {
            "kind": self.kind,
            "faiss": self.factory,
            "faiss_class": type(self.index).__name__,
            "build_seconds": round(self.build_seconds, 2),
            self.knob: self.value,
            "target_recall_at_10": self.target,
            "reached_target": self.reached,
            "tuning": [{self.knob: v, "recall_at_10": r} for v, r in self.tuning],
            "post_filter_factor": post_filter_factor,
            "post_filter_k": post_filter_factor * k,
        }


def nlist_for(n: int) -> int:
    """4 sqrt(n) lists, at most one per 39 training points (faiss's k-means minimum)."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


def build(base: data.F32, kind: Kind, seed: int) -> Baseline:
    """The baseline index of ``base`` (unit rows), timed from constructor to last add."""
    n, dim = base.shape
    started = time.perf_counter()
    if kind == "ivf":
        nlist = nlist_for(n)
        factory = f"IVF{nlist},Flat"
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = seed
        ivf.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
        sample = np.random.default_rng(seed).choice(
            n, size=min(n, TRAIN_POINTS_PER_LIST * nlist), replace=False
        )
        index.train(base[np.sort(sample)])
    else:
        factory = f"HNSW{HNSW_M},Flat"
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    for s in range(0, n, ADD_CHUNK):
        index.add(base[s : s + ADD_CHUNK])
    baseline = Baseline(kind, index, factory, time.perf_counter() - started)
    baseline.set(1)
    return baseline


def tune(
    b: Baseline, queries: data.F32, truth: data.I64, ids: data.I64, k: int, target: float
) -> None:
    """Set the smallest knob value whose unfiltered recall@k reaches ``target`` (see top)."""
    b.target = target
    b.tuning.clear()
    seen: dict[int, float] = {}

    def recall_at(value: int) -> float:
        if value not in seen:
            b.set(value)
            rows = b.search(queries, k)
            found = [ids[r[r >= 0]].tolist() for r in rows]
            seen[value] = round(data.recall(found, truth), 4)
            b.tuning.append((value, seen[value]))
        return seen[value]

    low, high = 0, 1  # recall_at(low) < target (0: nothing searched) <= recall_at(high)
    while recall_at(high) < target:
        if high == b.max_value:
            b.set(high)  # the most it can do; reported as not reached
            b.reached = False
            return
        low, high = high, min(2 * high, b.max_value)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if recall_at(mid) >= target else (mid, high)
    b.set(high)
    b.reached = True


def post_filtered(
    b: Baseline, query: data.F32, k: int, factor: int, admits: Callable[[data.I64], data.Mask]
) -> data.I64:
    """Base positions of one query's top ``k`` among its unfiltered top ``factor x k``."""
    rows = b.search(query, factor * k)[0]
    rows = rows[rows >= 0]
    kept: data.I64 = rows[admits(rows)][:k]
    return kept
