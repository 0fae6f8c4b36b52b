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
  ``nprobe x s^-1/4`` lists for IVF (51 of 1024 at s = 1 % for nprobe 16), ``ef_search /
  sqrt(s)`` for HNSW. Scanning lists that are 1/s times sparser would need ``nprobe / s`` for
  the same number of matches, but a filter drawn independently of the vectors keeps its top k
  in the query's nearest lists, where its matches (~500 at 1 %) are ranked, the best
  ``refine_factor x k`` re-ranked exactly.
  Measured with ``semcom bench index``'s vectors, 1M x 384, nlist 1024, filter by camera (1 %)
  or time (10 %), recall@10 against brute force (unfiltered at nprobe 16: 0.993): at 1 %,
  nprobe 24 0.998, 32 0.9993, 48-160 0.9997 (faiss time 0.7, 0.8, 1.1, 2.1 ms); at 10 %,
  nprobe 24 0.999, 32-160 0.9993. On uniform vectors (the hard case, 200k x 384) a filtered
  search at nprobe p finds 75-85 % of what an unfiltered one does at p, so s^-1/4 keeps it at
  least at the unfiltered recall. The square root used before (160 lists at 1 %, measured
  when IVF lists held float32 vectors and nothing was re-ranked) cost twice the time for no
  recall here. HNSW keeps it: not re-measured. And at least ``MIN_MATCHES_PER_HIT x k``
  matches are expected in the probed lists (``nprobe >= 16 k nlist / candidates``), which
  binds for very selective filters on large indexes (10M in 4096 lists, 0.05 %: 132, not 107)
  and on small ones (60k x 96 in 256 lists, 1 %: 69 lists; recall@10 0.9953 -> 0.9987).

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
from typing import Final, Literal

from cloud.index.base import IndexSettings

Route = Literal["empty", "exact", "index"]
IVF_WIDEN_POWER: Final = 0.25  # nprobe x s^-power for a filter admitting a share s (above)
HNSW_WIDEN_POWER: Final = 0.5  # ef_search x s^-power
MIN_MATCHES_PER_HIT: Final = 16  # IVF: matches expected in the probed lists per hit wanted
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
    nprobe = ef = None
    if shape.kind == "ivf":
        widen = math.ceil(settings.nprobe * s**-IVF_WIDEN_POWER)
        enough = math.ceil(MIN_MATCHES_PER_HIT * k * shape.nlist / candidates)
        nprobe = min(shape.nlist, max(settings.nprobe, widen, enough))
    elif shape.kind == "hnsw":
        ef = max(k, math.ceil(settings.hnsw_ef_search * s**-HNSW_WIDEN_POWER))
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
