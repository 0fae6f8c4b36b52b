"""The :class:`~cloud.index.base.VectorIndex` contract, one suite for every backend.

Each test runs on faiss (Flat and IVF), Qdrant's local mode, and a real Qdrant server when
``SEMCOM_TEST_QDRANT_URL`` names one (see :mod:`tests.cloud.index_backends`)::

    SEMCOM_TEST_QDRANT_URL=http://host:6333 pytest tests/cloud/test_index_contract.py

Every answer is checked against numpy brute force over the vectors the filter admits, on a
set small enough that every backend must be exact (a Qdrant server scans collections below
its ``full_scan_threshold`` and small filtered candidate sets exactly).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cloud.index import (
    DimensionMismatch,
    IndexClosed,
    IndexStorageError,
    InvalidBatch,
    SearchFilter,
    VectorIndex,
)
from tests.cloud.filtering import filter_mask
from tests.cloud.index_backends import Backend, backend_params, make_backend
from tests.cloud.test_index import (
    DIM,
    T0,
    TIE_TOLERANCE,
    Data,
    assert_matches_brute,
    fill,
    make_data,
    queries,
)

N = 800  # vectors; ids 1, 3, 5, ... (gaps), 10 cameras, 4 classes, 1 ms apart


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = make_backend(request.param, tmp_path / "index")
    yield b
    b.close()


@pytest.fixture(scope="module", params=backend_params())
def reader(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VectorIndex, Data]]:
    """A filled index per backend for the tests that only search it."""
    b = make_backend(request.param, tmp_path_factory.mktemp("index"))
    d = make_data(N)
    yield fill(b.open(DIM), d, batch=300), d
    b.close()


def shuffled_batches(d: Data, parts: int, seed: int = 3) -> list[tuple[np.ndarray, ...]]:
    order = np.random.default_rng(seed).permutation(len(d))
    return [
        tuple(col[rows] for col in d.rows(slice(None))) for rows in np.array_split(order, parts)
    ]


# ---------------------------------------------------------------------------- reads

FILTERS = {
    "cameras": SearchFilter(cameras=(3, 7)),
    "one-camera": SearchFilter(cameras=(5,)),
    "classes": SearchFilter(classes=(0, 2)),
    "window": SearchFilter(from_us=T0 + 200_000, to_us=T0 + 500_000),
    "from-only": SearchFilter(from_us=T0 + 600_000),
    "to-only": SearchFilter(to_us=T0 + 150_000),
    "combined": SearchFilter(
        cameras=(1, 4, 8), classes=(1, 3), from_us=T0 + 100_000, to_us=T0 + 700_000
    ),
    "selective": SearchFilter(cameras=(2,), classes=(0,), from_us=T0, to_us=T0 + 300_000),
    "unknown-camera": SearchFilter(cameras=(999,)),
    "no-cameras": SearchFilter(cameras=()),
    "no-classes": SearchFilter(classes=()),
    "empty-window": SearchFilter(from_us=T0 + 400_000, to_us=T0 + 400_000),
    "everything": SearchFilter(),
}


def test_round_trip_ids_and_last_id(backend: Backend) -> None:
    d = make_data(N)
    index = backend.open(DIM)
    assert isinstance(index, VectorIndex)
    assert (len(index), index.last_id, index.ids().tolist()) == (0, 0, [])
    assert index.ids().dtype == np.int64
    for batch in shuffled_batches(d, 4):  # ids in any order, across batches
        index.add(*batch)
    assert len(index) == N
    assert np.array_equal(index.ids(), d.ids)
    assert index.last_id == int(d.ids.max())
    stored = [0, 17, 401, N - 1]
    hits = index.search(d.vectors[stored] * np.float32(3), 1)  # scaled: the index normalises
    assert [row[0].id for row in hits] == d.ids[stored].tolist()
    assert all(row[0].score == pytest.approx(1.0, abs=TIE_TOLERANCE) for row in hits)
    info = index.describe()
    assert (info["backend"], info["space"], info["dim"], info["size"]) == (
        backend.kind,
        backend.space,
        DIM,
        N,
    )


def test_top_k_is_exact(reader: tuple[VectorIndex, Data]) -> None:
    index, d = reader
    q = queries(6)
    for k in (1, 10, 100, N + 5):
        hits = index.search(q, k)
        assert_matches_brute(hits, d, q, k, None, None)
        for row in hits:
            scores = [h.score for h in row]
            assert scores == sorted(scores, reverse=True)
    assert len(index.search(q[:1], N + 5)[0]) == N
    assert index.search(np.zeros((0, DIM), np.float32), 5) == []


@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_return_the_matching_best(reader: tuple[VectorIndex, Data], name: str) -> None:
    index, d = reader
    where = FILTERS[name]
    q = queries(4)
    matching = int(filter_mask(where, d.cameras, d.classes, d.ts).sum())
    k = 10 if name != "selective" else 500  # all of a small set: k above the matches
    hits = index.search(q, k, where)
    assert_matches_brute(hits, d, q, k, where, None)
    assert all(len(row) == min(k, matching) for row in hits)


# ---------------------------------------------------------------------------- writes


def test_remove_and_retention(backend: Backend) -> None:
    d = make_data(N)
    index = fill(backend.open(DIM), d, batch=300)
    cutoff = T0 + 250_000
    assert index.remove_before(cutoff) == int((d.ts < cutoff).sum())
    alive = d.ts >= cutoff
    assert index.remove_before(cutoff) == 0
    gone = d.ids[alive][[0, 5, 50, -1]]
    assert index.remove(np.concatenate([gone, [10**12, int(d.ids[0])]])) == 4  # unknown: ignored
    assert index.remove(gone) == 0
    alive &= ~np.isin(d.ids, gone)
    assert len(index) == int(alive.sum())
    assert np.array_equal(index.ids(), d.ids[alive])
    assert index.remove(np.zeros(0, np.int64)) == 0
    q = queries()
    for where in (None, FILTERS["cameras"], FILTERS["window"], FILTERS["combined"]):
        assert_matches_brute(index.search(q, 10, where), d, q, 10, where, alive)


def test_adding_an_id_again_keeps_the_first(backend: Backend) -> None:
    """An id held is not added again (the protocol): its vector and attributes stay."""
    d = make_data(N)
    index = fill(backend.open(DIM), d, batch=300)
    again = make_data(50, seed=7)  # other vectors, then other attributes, under held ids
    again.ids = d.ids[:50].copy()
    again.cameras[:] = 99
    again.classes[:] = 99
    index.add(*again.rows(slice(None)))
    assert len(index) == N
    assert index.search(again.vectors[:5], 3, SearchFilter(cameras=(99,))) == [[]] * 5
    assert index.search(again.vectors[:5], 3, SearchFilter(classes=(99,))) == [[]] * 5
    assert_matches_brute(index.search(again.vectors[:5], 10), d, again.vectors[:5], 10, None, None)
    # removed, then added again: the new row counts
    assert index.remove(again.ids[:10]) == 10
    index.add(*again.rows(slice(0, 10)))
    hits = index.search(again.vectors[:10], 1, SearchFilter(cameras=(99,)))
    assert [row[0].id for row in hits] == again.ids[:10].tolist()
    assert len(index) == N


def test_ids_must_not_be_negative(backend: Backend) -> None:
    """Catalog ids are positive; Qdrant (unsigned 64-bit point ids) could not hold others."""
    d = make_data(10)
    index = backend.open(DIM)
    ids = d.ids.copy()
    ids[3] = -5
    with pytest.raises(InvalidBatch, match="-5"):
        index.add(ids, d.vectors, d.cameras, d.classes, d.ts)
    assert len(index) == 0
    fill(index, d)
    assert index.remove(np.array([-5, -1, int(d.ids[0])])) == 1  # held by no index: ignored


def test_dimension_mismatch(backend: Backend) -> None:
    d = make_data(20)
    index = fill(backend.open(DIM), d)
    with pytest.raises(DimensionMismatch, match=f"{DIM + 1} dims") as err:
        index.add(d.ids + 1000, np.ones((20, DIM + 1), np.float32), d.cameras, d.classes, d.ts)
    assert (err.value.expected, err.value.got) == (DIM, DIM + 1)
    with pytest.raises(DimensionMismatch):
        index.search(np.ones((1, DIM - 1), np.float32), 3)
    assert len(index) == 20
    index.save()
    index.close()
    with pytest.raises(DimensionMismatch) as err:
        backend.open(2 * DIM)
    assert (err.value.expected, err.value.got) == (DIM, 2 * DIM)


def test_storage_of_another_space_is_refused(backend: Backend) -> None:
    index = fill(backend.open(DIM), make_data(20))
    index.save()
    index.close()
    backend.claim_other_space("someone-else-32")
    with pytest.raises(IndexStorageError, match="someone-else-32"):
        backend.open(DIM)


def test_spaces_never_mix(backend: Backend) -> None:
    a_data, b_data = make_data(100, seed=1), make_data(100, seed=2)
    b_data.ids += 10_000
    a = fill(backend.open(DIM, space=f"{backend.space}/a"), a_data)
    b = fill(backend.open(DIM, space=f"{backend.space}:a"), b_data)  # sanitised alike
    q = queries()
    assert {h.id for row in a.search(q, 200) for h in row} == set(a_data.ids.tolist())
    assert {h.id for row in b.search(q, 200) for h in row} == set(b_data.ids.tolist())


def test_persistence_across_reopen(backend: Backend) -> None:
    d = make_data(N)
    index = backend.open(DIM)
    fill(index, Data(*d.rows(slice(0, N // 2))), batch=200)
    index.save()
    fill(index, Data(*d.rows(slice(N // 2, None))), batch=200)
    highest = int(d.ids[-1])
    removed = np.array([int(d.ids[10]), highest])  # the highest id goes too
    assert index.remove(removed) == 2
    cutoff = T0 + 100_000
    dropped = index.remove_before(cutoff)
    index.save()
    alive = ~np.isin(d.ids, removed) & (d.ts >= cutoff)
    q = queries()
    where = FILTERS["combined"]
    before = index.search(q, 10), index.search(q, 10, where)
    index.close()

    again = backend.open(DIM)
    assert dropped == int(((d.ts < cutoff) & ~np.isin(d.ids, removed)).sum())
    assert len(again) == int(alive.sum())
    assert np.array_equal(again.ids(), d.ids[alive])
    assert again.last_id == highest  # the highest id ever added, though it was removed
    for hits, w in zip(before, (None, where), strict=True):
        after = again.search(q, 10, w)
        assert [[h.id for h in row] for row in after] == [[h.id for h in row] for row in hits]
        got = np.array([h.score for row in after for h in row])
        want = np.array([h.score for row in hits for h in row])
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert_matches_brute(after, d, q, 10, w, alive)
    more = make_data(20, seed=4)
    more.ids += highest
    again.add(*more.rows(slice(None)))
    assert (len(again), again.last_id) == (int(alive.sum()) + 20, int(more.ids[-1]))


def test_a_closed_index_refuses_work(backend: Backend) -> None:
    d = make_data(10)
    index = fill(backend.open(DIM), d)
    index.close()
    index.close()  # twice: harmless
    with pytest.raises(IndexClosed):
        index.search(queries(1), 3)
    with pytest.raises(IndexClosed):
        index.add(*d.rows(slice(None)))
    with pytest.raises(IndexClosed):
        index.remove(d.ids[:2])
    with pytest.raises(IndexClosed):
        index.remove_before(T0 + 1)
    with pytest.raises(IndexClosed):
        index.ids()


def test_searches_during_adds(backend: Backend) -> None:
    """Searches on other threads while batches arrive: no error, and each answer consistent
    (filter kept, scores ordered, only ids added so far)."""
    d = make_data(N)
    index = backend.open(DIM)
    errors: list[BaseException] = []
    stop = threading.Event()
    where = FILTERS["combined"]
    allowed = set(d.ids[filter_mask(where, d.cameras, d.classes, d.ts)].tolist())
    added: set[int] = set()  # grows before each add: whatever a search sees is in it
    searching = threading.Barrier(3)  # both searchers have answered once before adds start

    def search(w: SearchFilter | None, admitted: set[int] | None) -> None:
        first = True
        try:
            while first or not stop.is_set():
                for row in index.search(queries(2), 5, w):
                    found = {h.id for h in row}
                    assert found <= added
                    assert admitted is None or found <= admitted
                    scores = [h.score for h in row]
                    assert scores == sorted(scores, reverse=True)
                if first:
                    first = False
                    searching.wait(timeout=60)
        except BaseException as exc:
            errors.append(exc)
            searching.abort()

    threads = [
        threading.Thread(target=search, args=(None, None)),
        threading.Thread(target=search, args=(where, allowed)),
    ]
    for t in threads:
        t.start()
    try:
        with contextlib.suppress(threading.BrokenBarrierError):  # a searcher failed: see errors
            searching.wait(timeout=60)
        for batch in shuffled_batches(d, 16):
            added.update(batch[0].tolist())
            index.add(*batch)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    q = queries()
    assert_matches_brute(index.search(q, 10, where), d, q, 10, where, None)
