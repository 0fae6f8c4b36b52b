"""Filtered IVF searches keep their recall with the planner's widening (``IVF_WIDEN_POWER``).

The index route is forced (no exact plan), filters by camera (1 %), time (10 %) and class
(50 %) as in ``semcom bench index``, recall@10 against brute force.
"""

from __future__ import annotations

import pytest

from cloud.index import IndexSettings
from cloud.index.faiss_index import FaissIndex
from semcom.bench import index_data as data

K = 10


@pytest.fixture(scope="module")
def setup() -> tuple[FaissIndex, data.Workload, list[data.QueryFilters], data.Truth]:
    w = data.workload(60_000, 96, 150, "clustered", None, seed=5)
    settings = IndexSettings(exact_max_candidates=0, exact_cost_ratio=1e6)  # always the index
    index = FaissIndex("bench-96", 96, settings)
    for s in range(0, len(w.base), 20_000):
        rows = slice(s, s + 20_000)
        index.add(w.ids[rows], w.base[rows], w.cameras[rows], w.classes[rows], w.ts_us[rows])
    kinds = data.filters(w, seed=5)
    return index, w, kinds, data.ground_truth(w, kinds, K)


@pytest.mark.parametrize("name", ["none", "1%", "10%", "50%"])
def test_filtered_recall_is_at_least_the_unfiltered(
    setup: tuple[FaissIndex, data.Workload, list[data.QueryFilters], data.Truth], name: str
) -> None:
    index, w, kinds, truth = setup
    f = next(f for f in kinds if f.name == name)
    found, routes = [], set()
    for i in range(f.count):
        routes.add(index.explain(f.where(i), K).route)
        found.append([h.id for h in index.search(w.queries[i : i + 1], K, f.where(i))[0]])
    assert routes == {"index"}
    assert index.describe()["nlist"] == 256
    assert data.recall(found, truth.ids[name]) >= 0.99
    assert index.describe()["exact_fallbacks"] == 0  # answered by the index, not exactly
