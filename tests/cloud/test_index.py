"""The vector index behind one protocol: faiss (Flat, IVF) and Qdrant local mode.

Every search is checked against numpy brute force over the vectors that pass the filter.
The IVF index is built with ``nprobe == nlist`` where results must be exact, so a wrong
selector or id mapping cannot hide behind approximate recall.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloud.index import (
    DimensionMismatch,
    IndexClosed,
    IndexSettings,
    InvalidBatch,
    SearchFilter,
    VectorIndex,
    open_index,
)
from cloud.index.faiss_index import FaissIndex
from cloud.index.qdrant_index import QdrantIndex
from tests.cloud.filtering import filter_mask

DIM = 32
T0 = 1_700_000_000_000_000


@dataclass
class Data:
    ids: np.ndarray
    vectors: np.ndarray
    cameras: np.ndarray
    classes: np.ndarray
    ts: np.ndarray

    def rows(self, sl: slice) -> tuple[np.ndarray, ...]:
        return self.ids[sl], self.vectors[sl], self.cameras[sl], self.classes[sl], self.ts[sl]

    def __len__(self) -> int:
        return len(self.ids)


def make_data(n: int, seed: int = 0, dim: int = DIM) -> Data:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((16, dim))
    x = centres[rng.integers(0, 16, n)] + 0.5 * rng.standard_normal((n, dim))
    # Capture times rise with the id but arrive up to 5 ms out of order.
    ts = T0 + np.arange(n) * 1_000 + rng.integers(0, 5_000, n)
    return Data(
        ids=1 + 2 * np.arange(n, dtype=np.int64),  # increasing, with gaps
        vectors=x.astype(np.float32),  # not unit: the index normalises
        cameras=rng.integers(0, 10, n).astype(np.int32),
        classes=rng.integers(0, 4, n).astype(np.int32),
        ts=ts.astype(np.int64),
    )


def fill(index: VectorIndex, d: Data, batch: int = 2_000) -> VectorIndex:
    for s in range(0, len(d), batch):
        index.add(*d.rows(slice(s, s + batch)))
    return index


def brute(
    d: Data, queries: np.ndarray, k: int, where: SearchFilter | None, alive: np.ndarray | None
) -> list[list[int]]:
    keep = filter_mask(where, d.cameras, d.classes, d.ts)
    if alive is not None:
        keep &= alive
    x = d.vectors / np.linalg.norm(d.vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    rows = np.flatnonzero(keep)
    scores = q @ x[rows].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [d.ids[rows[o]].tolist() for o in order]


def ids_of(hits: list[list[object]]) -> list[list[int]]:
    return [[h.id for h in row] for row in hits]  # type: ignore[attr-defined]


# The faiss backend stores float16 vectors: scores differ from float32 ones by ~1e-4, so two
# candidates closer than that may swap places. Equal up to such swaps: same length, every id
# admitted by the filter, and the true (float32) scores of the hits those of the best k.
TIE_TOLERANCE = 2e-3


def assert_matches_brute(
    hits: list[list[Any]],
    d: Data,
    queries: np.ndarray,
    k: int,
    where: SearchFilter | None,
    alive: np.ndarray | None,
) -> None:
    expected = brute(d, queries, k, where, alive)
    got = ids_of(hits)
    assert [len(row) for row in got] == [len(row) for row in expected]
    x = d.vectors / np.linalg.norm(d.vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    position = {int(i): p for p, i in enumerate(d.ids)}
    allowed = set(d.ids[np.flatnonzero(filter_mask(where, d.cameras, d.classes, d.ts))].tolist())
    if alive is not None:
        allowed &= set(d.ids[alive].tolist())
    for qi, (row, want) in enumerate(zip(got, expected, strict=True)):
        assert set(row) <= allowed
        assert len(set(row)) == len(row)
        true_got = np.sort([float(q[qi] @ x[position[i]]) for i in row])
        true_want = np.sort([float(q[qi] @ x[position[i]]) for i in want])
        np.testing.assert_allclose(true_got, true_want, atol=TIE_TOLERANCE)
        # Each hit's reported score is its cosine (within the storage's rounding).
        for hit in hits[qi]:
            assert abs(hit.score - float(q[qi] @ x[position[hit.id]])) < TIE_TOLERANCE


def queries(n: int = 4, seed: int = 99) -> np.ndarray:
    return make_data(n, seed).vectors


# ---------------------------------------------------------------------------- backends

N_SMALL = 2_000
N_IVF = 20_000

# backend: (vectors in the shared index, vectors in a fresh one, settings for a directory)
BACKENDS: dict[str, tuple[int, int, Callable[[Path | None], IndexSettings]]] = {
    "faiss-flat": (N_SMALL, N_SMALL, lambda p: IndexSettings(path=p, kind="flat")),
    # nprobe == nlist: IVF with the selector must give exact answers
    "faiss-ivf": (
        N_IVF,
        N_IVF,
        lambda p: IndexSettings(path=p, kind="ivf", nlist=64, nprobe=64),
    ),
    # local mode on disk commits every upsert to SQLite: fewer vectors keep it quick
    "qdrant": (N_SMALL, 1_000, lambda p: IndexSettings(backend="qdrant", path=p)),
}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def built(request: pytest.FixtureRequest) -> Iterator[tuple[VectorIndex, Data]]:
    """A filled index per backend, shared by the read-only tests."""
    n, _, settings = BACKENDS[request.param]
    d = make_data(n)
    index = fill(open_index(settings(None), "vit-test-32", DIM), d)
    yield index, d
    index.close()


@pytest.fixture(params=sorted(BACKENDS))
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, IndexSettings, Data]:
    _, n, settings = BACKENDS[request.param]
    return request.param, settings(tmp_path / "index"), make_data(n)


WINDOW = SearchFilter(from_us=T0 + 300_000, to_us=T0 + 900_000)
FILTERS = {
    "none": None,
    "everything": SearchFilter(),
    "camera": SearchFilter(cameras=(3,)),
    "cameras-many": SearchFilter(cameras=(0, 2, 4, 6, 8, 9)),
    "class": SearchFilter(classes=(1,)),
    "window": WINDOW,
    "from-only": SearchFilter(from_us=T0 + 1_500_000),
    "to-only": SearchFilter(to_us=T0 + 400_000),
    "camera-class-window": SearchFilter(
        cameras=(3, 5), classes=(1, 2), from_us=T0 + 100_000, to_us=T0 + 1_200_000
    ),
    "selective": SearchFilter(cameras=(7,), classes=(0,), from_us=T0, to_us=T0 + 200_000),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_search_matches_brute_force(built: tuple[VectorIndex, Data], name: str) -> None:
    index, d = built
    q = queries()
    got = index.search(q, 10, FILTERS[name])
    assert_matches_brute(got, d, q, 10, FILTERS[name], None)
    for row in got:
        scores = [h.score for h in row]
        assert scores == sorted(scores, reverse=True)
        assert all(-1.0001 <= s <= 1.0001 for s in scores)


@pytest.mark.parametrize(
    "where",
    [
        SearchFilter(cameras=(999,)),
        SearchFilter(cameras=()),
        SearchFilter(classes=()),
        SearchFilter(from_us=T0 + 500_000, to_us=T0 + 500_000),
        SearchFilter(from_us=T0 - 10_000_000, to_us=T0 - 1),
    ],
    ids=["unknown-camera", "no-cameras", "no-classes", "empty-window", "before-all"],
)
def test_filters_matching_nothing(built: tuple[VectorIndex, Data], where: SearchFilter) -> None:
    index, _ = built
    assert index.search(queries(3), 5, where) == [[], [], []]


def test_k_larger_than_candidates(built: tuple[VectorIndex, Data]) -> None:
    index, d = built
    where = SearchFilter(cameras=(2,), classes=(3,), from_us=T0, to_us=T0 + 150_000)
    expected = brute(d, queries(2), 500, where, None)
    assert 0 < len(expected[0]) < 50
    assert_matches_brute(index.search(queries(2), 500, where), d, queries(2), 500, where, None)


def test_zero_queries_and_scores_are_cosines(built: tuple[VectorIndex, Data]) -> None:
    index, d = built
    assert index.search(np.zeros((0, DIM), np.float32), 5) == []
    hit = index.search(d.vectors[:1] * 7.5, 1)[0][0]  # a stored vector, scaled
    assert hit.id == d.ids[0]
    assert hit.score == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------------- writes


def test_remove_before_and_remove(fresh: tuple[str, IndexSettings, Data]) -> None:
    _, settings, d = fresh
    index = fill(open_index(settings, "vit-test-32", DIM), d)
    alive = np.ones(len(d), bool)
    cutoff = T0 + 250_000
    expected = int((d.ts < cutoff).sum())
    assert index.remove_before(cutoff) == expected
    alive &= d.ts >= cutoff
    gone = d.ids[alive][:5]
    assert index.remove(np.concatenate([gone, [10**12]])) == 5  # an unknown id is ignored
    assert index.remove(gone) == 0
    alive &= ~np.isin(d.ids, gone)
    assert len(index) == alive.sum()
    assert index.remove_before(cutoff) == 0
    q = queries()
    for where in (None, SearchFilter(cameras=(3,)), WINDOW):
        assert_matches_brute(index.search(q, 10, where), d, q, 10, where, alive)
    index.close()


def test_persistence_round_trip(fresh: tuple[str, IndexSettings, Data]) -> None:
    name, settings, d = fresh
    half = len(d) // 2
    index = open_index(settings, "vit-test-32", DIM)
    fill(index, Data(*d.rows(slice(0, half))))
    index.save()
    fill(index, Data(*d.rows(slice(half, None))))  # the second save appends
    removed = d.ids[[1, 10, 100]]
    index.remove(removed)
    index.save()
    q = queries()
    before = index.search(q, 10, WINDOW), index.search(q, 10)
    last_id, size = index.last_id, len(index)
    index.close()

    again = open_index(settings, "vit-test-32", DIM)
    assert (again.last_id, len(again)) == (last_id, size) == (int(d.ids[-1]), len(d) - 3)
    for where, hits in zip((WINDOW, None), before, strict=True):
        after = again.search(q, 10, where)
        assert ids_of(after) == ids_of(hits)
        scores = np.array([[h.score for h in row] for row in hits])
        got = np.array([[h.score for h in row] for row in after])
        # The same float16 rows; faiss's and numpy's sums may round differently (~1e-5).
        assert np.abs(got - scores).max() < 1e-4
    alive = ~np.isin(d.ids, removed)
    assert_matches_brute(again.search(q, 10), d, q, 10, None, alive)
    again.add(*d.rows(slice(len(d) - 5, None)))  # already indexed: kept once
    assert len(again) == size
    more = make_data(len(d) + 10, seed=1)
    more.ids += int(d.ids[-1])
    again.add(*more.rows(slice(len(d), None)))
    assert again.last_id == int(more.ids[-1])
    again.close()
    if name.startswith("faiss"):
        reopened = open_index(settings, "vit-test-32", DIM)
        assert reopened.last_id == last_id  # unsaved adds are lost; the catalog has them
        reopened.close()


def test_recreate_drops_what_was_saved(fresh: tuple[str, IndexSettings, Data]) -> None:
    _, settings, d = fresh
    index = fill(open_index(settings, "vit-test-32", DIM), Data(*d.rows(slice(0, 500))))
    index.save()
    index.close()
    from dataclasses import replace

    again = open_index(replace(settings, recreate=True), "vit-test-32", DIM)
    assert (len(again), again.last_id) == (0, 0)
    again.close()


def test_dimension_mismatch(fresh: tuple[str, IndexSettings, Data]) -> None:
    _, settings, d = fresh
    index = fill(open_index(settings, "vit-test-32", DIM), Data(*d.rows(slice(0, 300))))
    wide = np.zeros((300, DIM + 1), np.float32)
    with pytest.raises(DimensionMismatch, match="33 dims"):
        index.add(d.ids[300:600], wide, d.cameras[:300], d.classes[:300], d.ts[:300])
    with pytest.raises(DimensionMismatch):
        index.search(np.ones((1, 16), np.float32), 3)
    index.save()
    index.close()
    with pytest.raises(DimensionMismatch) as err:
        open_index(settings, "vit-test-32", 64)
    assert (err.value.expected, err.value.got) == (DIM, 64)


def test_two_spaces_in_one_directory_never_mix(
    fresh: tuple[str, IndexSettings, Data],
) -> None:
    _, settings, _ = fresh
    a_data, b_data = make_data(600, seed=1), make_data(600, seed=2)
    b_data.ids += 10_000
    a = fill(open_index(settings, "vit_small-384/a", DIM), a_data)
    b = fill(open_index(settings, "vit_small-384:a", DIM), b_data)  # sanitises alike
    for index in (a, b):
        index.save()
        index.close()
    a = open_index(settings, "vit_small-384/a", DIM)
    b = open_index(settings, "vit_small-384:a", DIM)
    q = queries()
    assert {h.id for row in a.search(q, 50) for h in row} <= set(a_data.ids.tolist())
    assert {h.id for row in b.search(q, 50) for h in row} <= set(b_data.ids.tolist())
    assert (len(a), len(b)) == (600, 600)
    a.close()
    b.close()


def test_contract_errors(fresh: tuple[str, IndexSettings, Data]) -> None:
    _, settings, d = fresh
    index = open_index(settings, "vit-test-32", DIM)
    rows = d.rows(slice(0, 10))
    with pytest.raises(InvalidBatch, match="9 cameras"):
        index.add(rows[0], rows[1], rows[2][:9], rows[3], rows[4])
    nan = rows[1].copy()
    nan[4, 0] = np.nan
    with pytest.raises(InvalidBatch, match="row 4"):
        index.add(rows[0], nan, rows[2], rows[3], rows[4])
    with pytest.raises(InvalidBatch, match="row 0"):
        index.add(rows[0], np.zeros_like(rows[1]), rows[2], rows[3], rows[4])
    with pytest.raises(InvalidBatch, match="k must be"):
        index.search(queries(1), 0)
    index.close()
    with pytest.raises(IndexClosed):
        index.search(queries(1), 3)


def test_open_index_picks_the_backend(tmp_path: Path) -> None:
    faiss = open_index(IndexSettings(), "s-8", 8)
    qdrant = open_index(IndexSettings(backend="qdrant"), "s-8", 8)
    assert isinstance(faiss, FaissIndex)
    assert isinstance(qdrant, QdrantIndex)
    for index in (faiss, qdrant):
        assert isinstance(index, VectorIndex)
        assert index.describe()["size"] == 0
        assert index.last_id == 0
        index.close()


def test_ids_in_any_order_overlapping_or_repeated_are_indexed_once(
    fresh: tuple[str, IndexSettings, Data],
) -> None:
    """The writer's batches are not sorted (grouped by codec, embeddings joining older box
    rows) and a catch-up overlaps them: every id ends up indexed exactly once."""
    _, settings, d = fresh
    index = open_index(settings, "vit-test-32", DIM)
    order = np.random.default_rng(5).permutation(len(d))
    first, late = order[: len(d) // 2], order[len(d) // 2 :]
    index.add(*(col[np.sort(first)] for col in d.rows(slice(None))))  # an older save
    assert index.last_id == int(d.ids[np.sort(first)][-1])
    for part in np.array_split(late, 7):  # below and above last_id, unsorted, some twice
        rows = np.concatenate((part, part[:3], first[:20]))
        index.add(*(col[rows] for col in d.rows(slice(None))))
    assert len(index) == len(d)
    assert index.last_id == int(d.ids[-1])
    assert np.array_equal(index.ids(), d.ids)
    q = queries()
    for where in (None, SearchFilter(cameras=(3,)), WINDOW):
        assert_matches_brute(index.search(q, 10, where), d, q, 10, where, None)
    gone = np.sort(d.ids[late[:40]])  # late rows are found for removal too
    assert index.remove(gone) == 40
    alive = ~np.isin(d.ids, gone)
    assert np.array_equal(index.ids(), d.ids[alive])
    index.add(*(col[late[:40]] for col in d.rows(slice(None))))  # back again
    assert len(index) == len(d)
    index.save()
    index.close()
    again = open_index(settings, "vit-test-32", DIM)
    assert np.array_equal(again.ids(), d.ids)
    assert_matches_brute(again.search(q, 10, WINDOW), d, q, 10, WINDOW, None)
    again.add(*(col[late] for col in d.rows(slice(None))))
    assert len(again) == len(d)
    again.close()
