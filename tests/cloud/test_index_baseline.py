"""The bench's independent faiss baseline and its workload: tuning, post-filtering, truth."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from semcom.bench import index_baseline as baseline
from semcom.bench import index_data as data


@pytest.fixture(scope="module")
def w() -> data.Workload:
    # uniform: the hard case, where IVF needs many probes (tuning has something to do)
    return data.workload(20_000, 24, 100, "uniform", None, seed=3)


@pytest.fixture(scope="module")
def kinds(w: data.Workload) -> list[data.QueryFilters]:
    return data.filters(w, seed=3)


@pytest.fixture(scope="module")
def truth(w: data.Workload, kinds: list[data.QueryFilters]) -> data.Truth:
    return data.ground_truth(w, kinds, 10)


def brute(w: data.Workload, f: data.QueryFilters, i: int, k: int = 10) -> set[int]:
    """One query's true top k, computed the slow obvious way."""
    where = f.where(i)
    keep = np.ones(len(w.base), np.bool_)
    if where is not None and where.cameras is not None:
        keep &= np.isin(w.cameras, where.cameras)
    if where is not None and where.classes is not None:
        keep &= np.isin(w.classes, where.classes)
    if where is not None and where.from_us is not None and where.to_us is not None:
        keep &= (w.ts_us >= where.from_us) & (w.ts_us < where.to_us)
    rows = np.flatnonzero(keep)
    scores = w.base[rows] @ w.queries[i]
    return set(w.ids[rows[np.argsort(-scores)[:k]]].tolist())


def test_ground_truth_is_brute_force_under_every_filter(
    w: data.Workload, kinds: list[data.QueryFilters], truth: data.Truth
) -> None:
    shares = {"none": 1.0, "1%": 0.01, "10%": 0.1, "50%": 0.5, "0.1%": 0.001}
    assert [f.name for f in kinds] == list(shares)
    for f in kinds:
        assert abs(truth.selectivity[f.name] - shares[f.name]) <= 0.3 * shares[f.name]
        for i in (0, 1, 57):
            got = truth.ids[f.name][i]
            assert set(got[got >= 0].tolist()) == brute(w, f, i), (f.name, i)


def test_the_50_percent_filter_is_by_class(kinds: list[data.QueryFilters]) -> None:
    half = kinds[3].where(0)
    assert half is not None
    assert half.classes in data.CLASS_SETS
    assert half.cameras is None


def test_baseline_is_plain_faiss_ivf_flat(w: data.Workload) -> None:
    b = baseline.build(w.base, "ivf", seed=0)
    assert type(b.index).__name__ == "IndexIVFFlat"
    assert b.factory == f"IVF{baseline.nlist_for(len(w.base))},Flat"
    assert int(b.index.ntotal) == len(w.base)
    assert b.index.metric_type == baseline.faiss.METRIC_INNER_PRODUCT


def test_tuning_reaches_the_target_with_the_smallest_nprobe(
    w: data.Workload, truth: data.Truth
) -> None:
    b = baseline.build(w.base, "ivf", seed=0)
    baseline.tune(b, w.queries, truth.ids["none"], w.ids, 10, target=0.9)
    assert b.reached
    assert b.value > 1

    def measured(nprobe: int) -> float:  # independently of tune's own bookkeeping
        b.set(nprobe)
        rows = b.search(w.queries, 10)
        return data.recall([w.ids[r[r >= 0]].tolist() for r in rows], truth.ids["none"])

    chosen = b.value
    assert measured(chosen) >= 0.9 > measured(chosen - 1)
    assert (chosen, round(measured(chosen), 4)) in b.tuning


def test_tuning_says_when_the_target_is_out_of_reach(w: data.Workload, truth: data.Truth) -> None:
    b = baseline.build(w.base, "ivf", seed=0)
    baseline.tune(b, w.queries, truth.ids["none"], w.ids, 10, target=1.01)
    assert not b.reached
    assert b.value == b.max_value
    assert b.describe(10, 10)["reached_target"] is False


def test_post_filtering_misses_what_a_selective_filter_admits(
    w: data.Workload, kinds: list[data.QueryFilters], truth: data.Truth
) -> None:
    b = baseline.build(w.base, "ivf", seed=0)
    baseline.tune(b, w.queries, truth.ids["none"], w.ids, 10, target=0.95)
    found: dict[str, list[list[int]]] = {}
    for f in kinds:
        found[f.name] = []
        for i in range(f.count):
            rows = baseline.post_filtered(b, w.queries[i : i + 1], 10, 10, partial(f.admits, i, w))
            assert len(rows) <= 10
            assert f.admits(i, w, rows).all()
            found[f.name].append(w.ids[rows].tolist())
    recall = {name: data.recall(hits, truth.ids[name]) for name, hits in found.items()}
    assert recall["none"] >= 0.95
    assert recall["50%"] >= 0.8  # a top 100 holds ~50 that pass
    assert recall["1%"] < 0.3  # ... and ~1 that passes a 1 % filter
    assert recall["0.1%"] < 0.1


def test_hnsw_baseline_tunes_ef_search(w: data.Workload, truth: data.Truth) -> None:
    b = baseline.build(w.base, "hnsw", seed=0)
    assert type(b.index).__name__ == "IndexHNSWFlat"
    baseline.tune(b, w.queries, truth.ids["none"], w.ids, 10, target=0.95)
    assert b.reached
    assert b.knob == "efSearch"
    assert b.index.hnsw.efSearch == b.value
    assert max(r for _, r in b.tuning) >= 0.95
