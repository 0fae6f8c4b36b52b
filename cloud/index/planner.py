"""The query planner of the faiss backend: exact search over the candidates, or the index.

A filter is evaluated first (:mod:`cloud.index.columns`), so its candidate count is known
before searching. Two ways to answer:

- **exact**: score every candidate from the float16 vector store (gathered rows, or a scan
  of the store with a selector when the candidates are many); recall 1, cost ~ candidates x
  dim. Gathering float16 rows costs ~3 us a 384-d candidate on two busy cores (5x float32's),
  so 2,000 candidates take ~6 ms.
- **index**: search the faiss index with the candidates as an ``IDSelector``. For IVF the
  selector is tested on every entry of the probed lists and only matching entries are scored,
  so a selective filter leaves few matches in the usual ``nprobe`` lists and recall drops. The
  planner widens the search as the selectivity s (share of vectors matching) falls:
  ``nprobe / sqrt(s)`` lists (``ef_search / sqrt(s)`` for HNSW). Scanning lists that are
  1/s times sparser would need ``nprobe / s`` for the same number of matches; the square root
  is the measured compromise (1M x 384: recall@10 >= 0.99 at s = 1 % and 10 %).

Costs, in units of one IVF list entry skipped by the selector: an exact candidate costs
``exact_cost_ratio`` (a gathered row of ``dim`` floats vs one bitmap test, ~30 at 384 dims
measured with float32 rows),
an IVF search ``nprobe x size / nlist``. The cheaper wins; a filter matching at most
``exact_max_candidates`` is always exact (a few ms at most, and no recall loss where a user
narrowed the search on purpose). A Flat index is always answered exactly (it has no faiss
structure beside the columns). For HNSW a search scores about ``ef_search x M`` vectors,
each costing what an exact candidate does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from cloud.index.base import IndexSettings

Route = Literal["empty", "exact", "index"]
Structure = Literal["flat", "ivf", "hnsw"]


@dataclass(frozen=True)
class Shape:
    """What the planner needs to know of the faiss index: its kind, size and lists."""

    kind: Structure
    size: int  # live vectors
    nlist: int = 0  # IVF only


@dataclass(frozen=True)
class Plan:
    route: Route
    candidates: int  # live vectors matching the filter
    selectivity: float  # candidates / size
    nprobe: int | None = None  # route "index" on IVF
    ef_search: int | None = None  # route "index" on HNSW

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "route": self.route,
            "candidates": self.candidates,
            "selectivity": round(self.selectivity, 6),
        }
        if self.nprobe is not None:
            out["nprobe"] = self.nprobe
        if self.ef_search is not None:
            out["ef_search"] = self.ef_search
        return out


def plan(shape: Shape, candidates: int, k: int, settings: IndexSettings, filtered: bool) -> Plan:
    """Choose how to answer a query whose filter admits ``candidates`` of ``shape.size``."""
    if candidates <= 0 or shape.size <= 0:
        return Plan("empty", 0, 0.0)
    s = min(1.0, candidates / shape.size)
    if shape.kind == "flat":
        return Plan("exact", candidates, s)  # Flat has no faiss index: the columns are it
    widen = 1.0 / math.sqrt(s)
    nprobe = ef = None
    if shape.kind == "ivf":
        nprobe = min(shape.nlist, max(settings.nprobe, math.ceil(settings.nprobe * widen)))
    elif shape.kind == "hnsw":
        ef = max(k, math.ceil(settings.hnsw_ef_search * widen))
    if not filtered:
        return Plan("index", candidates, s, nprobe, ef)
    if candidates <= settings.exact_max_candidates:
        return Plan("exact", candidates, s)
    exact_cost = candidates * settings.exact_cost_ratio
    if shape.kind == "ivf":
        assert nprobe is not None
        index_cost = nprobe * shape.size / max(shape.nlist, 1)
    else:  # hnsw (Flat returned above)
        assert ef is not None
        index_cost = ef * settings.hnsw_m * settings.exact_cost_ratio
    if exact_cost <= index_cost:
        return Plan("exact", candidates, s)
    return Plan("index", candidates, s, nprobe, ef)
