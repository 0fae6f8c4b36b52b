"""The faiss backend's own machinery: growth and retraining, the planner, tombstones,
compaction, the time envelopes, and searches running while the indexer adds."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from cloud.index import IndexSettings, InvalidSettings, SearchFilter
from cloud.index.batch import space_key
from cloud.index.faiss_index import FaissIndex, wanted
from cloud.index.faiss_ops import nlist_for
from cloud.index.planner import Shape, plan
from tests.cloud.test_index import (
    DIM,
    T0,
    Data,
    assert_matches_brute,
    fill,
    make_data,
    queries,
)


def test_auto_grows_flat_to_ivf_retrains_and_shrinks_back(tmp_path: Path) -> None:
    settings = IndexSettings(path=tmp_path, flat_max=3_000, nprobe=1_000)
    d = make_data(9_000)
    index = FaissIndex("vit-test-32", DIM, settings)
    fill(index, Data(*d.rows(slice(0, 3_000))), batch=1_000)
    assert index.structure == "flat"
    index.add(*d.rows(slice(3_000, 3_001)))  # crosses flat_max: trained on what is stored
    info = index.describe()
    assert (info["kind"], info["nlist"], info["trained_at"]) == ("ivf_sq8", 64, 3_001)
    fill(index, Data(*d.rows(slice(3_001, None))), batch=1_000)
    info = index.describe()  # 2 x 64^2 = 8192 vectors: nlist doubles
    assert (info["nlist"], info["trained_at"], info["rebuilds"]) == (128, 9_000, 2)
    q = queries()
    assert_matches_brute(index.search(q, 10), d, q, 10, None, None)
    index.save()
    index.close()

    index = FaissIndex("vit-test-32", DIM, settings)
    assert (index.structure, index.describe()["nlist"]) == ("ivf", 128)
    cutoff = int(d.ts[7_800])
    index.remove_before(cutoff)  # below flat_max / 2: back to exact Flat
    assert index.structure == "flat"
    alive = d.ts >= cutoff
    assert_matches_brute(index.search(q, 10), d, q, 10, None, alive)
    index.close()


def test_growth_rule() -> None:
    auto = IndexSettings(flat_max=20_000)
    assert wanted(auto, "flat", 0, 20_000) == ("flat", 0)
    assert wanted(auto, "flat", 0, 20_001) == ("ivf", 128)
    assert wanted(auto, "ivf", 128, 32_767) == ("ivf", 128)
    assert wanted(auto, "ivf", 128, 32_768) == ("ivf", 256)
    assert wanted(auto, "ivf", 512, 1_000_000) == ("ivf", 1024)
    assert wanted(auto, "ivf", 1024, 1_000_000) == ("ivf", 1024)
    assert wanted(auto, "ivf", 1024, 9_999) == ("flat", 0)
    assert wanted(IndexSettings(kind="ivf", nlist=64), "flat", 0, 2_495) == ("flat", 0)
    assert wanted(IndexSettings(kind="ivf", nlist=64), "flat", 0, 2_496) == ("ivf", 64)
    assert wanted(IndexSettings(kind="hnsw"), "flat", 0, 10) == ("hnsw", 0)
    sizes = (100, 20_000, 32_767, 32_768, 131_072, 1_000_000)
    assert [nlist_for(n) for n in sizes] == [2, 128, 128, 256, 512, 1024]


def test_planner_routes() -> None:
    s = IndexSettings(nprobe=16, exact_max_candidates=2_048, exact_cost_ratio=30)
    ivf = Shape("ivf", 1_000_000, 1024)
    assert plan(ivf, 0, 10, s, filtered=True).route == "empty"
    unfiltered = plan(ivf, 1_000_000, 10, s, filtered=False)
    assert (unfiltered.route, unfiltered.nprobe) == ("index", 16)
    assert plan(ivf, 2_000, 10, s, filtered=True).route == "exact"
    one_percent = plan(ivf, 10_000, 10, s, filtered=True)
    assert (one_percent.route, one_percent.nprobe) == ("index", 51)  # 16 x 0.01^-1/4
    assert plan(ivf, 100_000, 10, s, filtered=True).nprobe == 29
    assert plan(ivf, 500_000, 10, s, filtered=True).nprobe == 20
    # a very selective filter: 16 matches per hit expected in the probed lists, 160 for k 10
    forced = IndexSettings(nprobe=16, exact_max_candidates=0, exact_cost_ratio=1e9)
    assert plan(Shape("ivf", 10_000_000, 4096), 5_000, 10, forced, filtered=True).nprobe == 132
    # Flat has no faiss structure: always exact, filtered or not
    assert plan(Shape("flat", 1_000_000), 10_000, 10, s, filtered=True).route == "exact"
    assert plan(Shape("flat", 1_000_000), 100_000, 10, s, filtered=True).route == "exact"
    assert plan(Shape("flat", 20_000), 20_000, 10, s, filtered=False).route == "exact"
    # HNSW scores ~ ef x M vectors per search: 10k candidates are cheaper exactly
    hnsw = Shape("hnsw", 1_000_000)
    assert plan(hnsw, 10_000, 10, s, filtered=True).route == "exact"
    ten_percent = plan(hnsw, 100_000, 10, s, filtered=True)
    assert (ten_percent.route, ten_percent.ef_search) == ("index", 203)


def test_ivf_filtered_routes_agree_with_brute_force() -> None:
    """Both routes on one IVF index: exact on few candidates, the selector on many."""
    d = make_data(20_000)
    settings = IndexSettings(kind="ivf", nlist=64, nprobe=64, exact_max_candidates=500)
    index = fill(FaissIndex("vit-test-32", DIM, settings), d)
    q = queries()
    cases = {
        "exact": SearchFilter(cameras=(4,), from_us=T0, to_us=T0 + 1_000_000),
        "index-bitmap": SearchFilter(cameras=(4, 5)),
        "index-range": SearchFilter(from_us=T0 + 2_000_000, to_us=T0 + 9_000_000),
    }
    for route, where in cases.items():
        assert index.explain(where).route == route.split("-")[0]
        assert_matches_brute(index.search(q, 10, where), d, q, 10, where, None)
    index.close()


def test_anti_correlated_filter_falls_back_to_exact() -> None:
    """Camera 2 sees only vectors far from the query: the probed lists hold none of them."""
    d = make_data(6_000)
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(DIM), rng.standard_normal(DIM)
    d.cameras[:] = np.arange(len(d)) % 2 + 1
    d.vectors[:] = np.where(d.cameras[:, None] == 1, a, b) + 0.3 * rng.standard_normal(
        (len(d), DIM)
    )
    settings = IndexSettings(kind="ivf", nlist=64, nprobe=1, exact_max_candidates=0)
    index = fill(FaissIndex("vit-test-32", DIM, settings), d)
    q = (a + 0.3 * rng.standard_normal((3, DIM))).astype(np.float32)
    where = SearchFilter(cameras=(2,))
    assert index.explain(where).route == "index"
    assert_matches_brute(index.search(q, 10, where), d, q, 10, where, None)
    assert index.describe()["exact_fallbacks"] == 3
    index.close()


def test_late_capture_times_still_filter_right() -> None:
    """A batch captured earlier than what is stored (an edge's backlog) widens the envelope."""
    d = make_data(3_000)
    late = np.arange(2_000, 3_000)
    d.ts[late] = T0 + 100_000 + late  # captured inside the first 0.1 s, added last
    index = fill(FaissIndex("vit-test-32", DIM, IndexSettings(kind="flat")), d, batch=500)
    q = queries()
    for where in (
        SearchFilter(from_us=T0 + 50_000, to_us=T0 + 150_000),
        SearchFilter(from_us=T0 + 1_000_000),
        SearchFilter(to_us=T0 + 102_500),
        SearchFilter(cameras=(1,), to_us=T0 + 120_000),
    ):
        assert_matches_brute(index.search(q, 20, where), d, q, 20, where, None)
    index.close()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_tombstones_and_compaction(kind: Literal["flat", "hnsw"], tmp_path: Path) -> None:
    settings = IndexSettings(path=tmp_path, kind=kind, compact_dead_share=0.3, hnsw_ef_search=400)
    d = make_data(2_000)
    index = fill(FaissIndex("vit-test-32", DIM, settings), d)
    alive = np.ones(len(d), bool)
    gone = d.ids[::5]  # 20 %: tombstones, no compaction yet
    assert index.remove(gone) == len(gone)
    alive &= ~np.isin(d.ids, gone)
    assert index.describe()["removed_not_compacted"] == len(gone)
    q = queries()
    assert_matches_brute(index.search(q, 10), d, q, 10, None, alive)
    index.save()  # tombstones and the structure are saved: the same answers after reopening
    index.close()
    index = FaissIndex("vit-test-32", DIM, settings)
    assert_matches_brute(index.search(q, 10), d, q, 10, None, alive)
    index.remove_before(int(d.ts[400]))  # past 30 %: compacted
    alive &= d.ts >= int(d.ts[400])
    assert index.describe()["removed_not_compacted"] == 0
    assert len(index) == alive.sum()
    where = SearchFilter(cameras=(2,))
    assert_matches_brute(index.search(q, 10, where), d, q, 10, where, alive)
    index.save()  # new positions: every row written again, the old files swept
    index.close()
    index = FaissIndex("vit-test-32", DIM, settings)
    assert len(index) == alive.sum()
    assert_matches_brute(index.search(q, 10), d, q, 10, None, alive)
    assert len(list((tmp_path / space_key("vit-test-32")).glob("seg-*"))) == 1
    index.close()


def test_searches_while_adding_and_retraining() -> None:
    d = make_data(12_000)
    index = FaissIndex("vit-test-32", DIM, IndexSettings(flat_max=2_000, nprobe=1_000))
    fill(index, Data(*d.rows(slice(0, 1_000))))
    errors: list[BaseException] = []
    stop = threading.Event()
    known = set(d.ids.tolist())

    def search() -> None:
        try:
            while not stop.is_set():
                for row in index.search(queries(2), 5, SearchFilter(cameras=(1, 2))):
                    assert {h.id for h in row} <= known
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    fill(index, Data(*d.rows(slice(1_000, None))), batch=500)  # flat -> ivf -> retrain
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert index.describe()["rebuilds"] == 2
    q = queries()
    assert_matches_brute(index.search(q, 10), d, q, 10, None, None)
    index.close()


def test_settings_are_checked() -> None:
    with pytest.raises(InvalidSettings, match="nprobe"):
        IndexSettings(nprobe=0)
    with pytest.raises(InvalidSettings, match="compact_dead_share"):
        IndexSettings(compact_dead_share=0)


def test_space_keys_are_safe_and_distinct() -> None:
    keys = {space_key(s) for s in ("a/b", "a_b", "a:b", "../x", "")}
    assert len(keys) == 5
    assert all(k.replace("-", "").replace("_", "").replace(".", "").isalnum() for k in keys)
    assert not any(k.startswith(".") for k in keys)


def test_vectors_are_held_once_as_float16_and_ivf_adds_8_bit_codes() -> None:
    """Per vector: Flat 2 bytes a dimension (the columns alone), IVF 1 more (its 8-bit codes);
    float32 held twice, as before, was 8 bytes a dimension."""
    dim, n = 768, 3_000
    d = make_data(n, dim=dim)
    extra = {"flat": 0, "ivf": dim + 8}  # IVF: a code and a list id per vector
    for kind in ("flat", "ivf"):
        index = FaissIndex("vit-test-768", dim, IndexSettings(kind=kind))  # type: ignore[arg-type]
        fill(index, d, batch=1_000)
        info = index.describe()
        per_vector = int(info["memory_bytes"]) / n  # type: ignore[call-overload]
        # columns: 2 x 768 + ids, attributes, envelopes (< 100 B); IVF: + centroids
        low = 2 * dim + extra[kind]
        assert low < per_vector < low + 100 + (4 * dim * 64 / n if kind == "ivf" else 0), (
            kind,
            per_vector,
        )
        index.close()


def test_an_index_saved_with_float32_vectors_and_an_ivf_flat_still_loads(
    tmp_path: Path,
) -> None:
    """Files written before the float16 storage: float32 segments, an IndexIVFFlat."""
    from cloud.index.faiss_ops import faiss

    settings = IndexSettings(path=tmp_path, kind="ivf")
    d = make_data(4_000)
    index = FaissIndex("vit-test-32", DIM, settings)
    fill(index, d, batch=1_000)
    index.save()
    index.close()
    directory = tmp_path / space_key("vit-test-32")
    for seg in directory.glob("seg-*.npz"):
        with np.load(seg) as arrays:
            columns = {name: arrays[name] for name in arrays.files}
        assert columns["vectors"].dtype == np.float16
        columns["vectors"] = columns["vectors"].astype(np.float32)
        with open(seg, "wb") as f:
            np.savez(f, **columns)
    (structure,) = directory.glob("structure-*.faiss")
    saved = faiss.read_index(str(structure))
    ivf = faiss.extract_index_ivf(saved)
    old = faiss.IndexIVFFlat(
        faiss.clone_index(ivf.quantizer), DIM, ivf.nlist, faiss.METRIC_INNER_PRODUCT
    )
    faiss.write_index(old, str(structure))
    # Every list probed: the search is exhaustive, so it must match brute force.
    again = FaissIndex("vit-test-32", DIM, IndexSettings(path=tmp_path, kind="ivf", nprobe=4_096))
    assert len(again) == len(d)
    assert again.describe()["kind"] == "ivf_sq8"
    q = queries()
    assert_matches_brute(again.search(q, 10), d, q, 10, None, None)
    where = SearchFilter(cameras=(1,))
    assert_matches_brute(again.search(q, 10, where), d, q, 10, where, None)
    again.close()
