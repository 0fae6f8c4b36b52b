"""How the codebook fitter chooses its projection: with track ids, whole tracks are held out and
the candidates (reduced dim m..8m; PCA, and PCA + OPQ folded into the PQCodec's projection)
are scored by held-out same-track recall@10; without them, by 10-recall@10 as before. The
cloud's auto-fit passes each stored embedding's catalog track and capture time (SQLite and a
real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
import pytest
from sqlalchemy.engine import Engine

from cloud.codebook_fit import (
    CRITERION_KNN,
    CRITERION_TRACK,
    fit_codebook,
    to_pqcodec,
    train_opq,
    train_pca,
    unit_rows,
)
from cloud.codebooks import CodebookLibrary
from cloud.codebooks_auto import CodebookFitter
from cloud.codebooks_config import CodebooksConfig
from cloud.db import open_database
from cloud.session import EdgeSession
from cloud.store import Store
from shared.codec import decode, encode
from shared.errors import CodecError
from shared.messages import Envelope, Error, Message
from shared.pq import PQCodec
from shared.track_recall import same_track_recall
from shared.vectors import CodecSet, create_codec
from tests.cloud.test_codebooks import DIM, T0, clustered, embedding, hello

HALF_SECOND_US = 500_000


def tracked(
    n_tracks: int, per: int, *, hidden: bool, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per`` sightings (0.5 s apart) of each of ``n_tracks`` road users in DIM dims.

    ``hidden``: a track's identity is a small offset in the 56 low-variance dims while each
    sighting varies much more in the other 8 (a PCA to 8 dims keeps the noise and loses the
    tracks); otherwise the identity is a large offset in every dim (any projection keeps it).
    """
    rng = np.random.default_rng(seed)
    t = np.repeat(np.arange(n_tracks), per)
    times = T0 + np.tile(np.arange(per) * HALF_SECOND_US, n_tracks)
    offsets = rng.standard_normal((n_tracks, DIM)) * (0.3 if hidden else 1.0)
    if hidden:
        offsets[:, :8] = 0.0
    x = offsets[t] + 0.05 * rng.standard_normal((len(t), DIM))
    if hidden:
        x[:, :8] += rng.standard_normal((len(t), 8))
    return x.astype(np.float32), t.astype(np.int64), times.astype(np.int64)


# ---------------------------------------------------------------------------- conversion


def test_the_opq_rotation_folds_into_the_projection_exactly() -> None:
    train, held = clustered(3000, 1), clustered(500, 2)
    pca = train_pca(train, 8, 32)
    opq, pq = train_opq(train, pca, 8, seed=3)
    book = to_pqcodec(pca, pq, opq=opq)
    # faiss's own pipeline: PCA, then OPQ, then an IndexPQ that stores the codes
    index = faiss.IndexPQ(32, 8, 8)
    index.pq = pq
    index.is_trained = True
    chain = faiss.IndexPreTransform(index)
    chain.prepend_transform(opq)
    chain.prepend_transform(pca)
    chain.add(held)
    theirs = faiss.vector_to_array(index.codes).reshape(500, 8)
    assert (book.encode(held) == theirs).mean() > 0.999  # float ties at most
    # the rotation is there (not the identity): without it the codes differ
    assert (to_pqcodec(pca, pq).encode(held) == theirs).mean() < 0.5
    # decoding lands on faiss's reconstruction in the reduced, rotated space
    np.testing.assert_allclose(book.project(book.decode(theirs)), pq.decode(theirs), atol=1e-5)


# ---------------------------------------------------------------------------- selection


def test_a_small_projection_that_loses_the_tracks_is_not_chosen() -> None:
    x, t, times = tracked(300, 8, hidden=True, seed=1)
    book, report = fit_codebook(x, m=8, tracks=t, times_us=times, opq=False)
    sel = book.info["selection"]
    assert list(sel) == ["8", "16", "32", "64"]  # m, 2m, 4m, 8m
    assert report.criterion == book.info["criterion"] == CRITERION_TRACK
    assert sel["8"] < 0.4  # the 8 noisy dims: a fresh sighting rarely finds its track
    assert sel["64"] > 0.8
    best = max(sel.values())
    assert book.info["chosen"] == next(k for k, v in sel.items() if v >= best - 0.005)
    assert book.reduced_dim >= 32
    assert report.track_recall_at_10 == sel[book.info["chosen"]]
    assert report.f32_track_recall_at_10 is not None
    assert report.f32_track_recall_at_10 > 0.9
    assert report.track_queries == report.held_out  # 8 sightings 0.5 s apart: all measurable
    # whole tracks were held out: the held-out rows are a multiple of a track's 8 sightings
    assert report.held_out % 8 == 0
    # measured again on tracks the fit never saw, the choice holds against the smallest
    fresh, ft, ftimes = tracked(60, 8, hidden=True, seed=2)
    fresh = unit_rows(fresh)

    def recall(b: PQCodec) -> float:
        stored = b.decode(b.encode(fresh))
        return same_track_recall(fresh, stored, ft, ftimes).recall

    small, _ = fit_codebook(x, m=8, reduced_dim=8, tracks=t, times_us=times, opq=False)
    assert recall(book) > recall(small) + 0.3


def test_when_every_projection_keeps_the_tracks_the_smallest_wins() -> None:
    x, t, times = tracked(300, 8, hidden=False, seed=3)
    book, report = fit_codebook(x, m=8, tracks=t, times_us=times)
    sel = book.info["selection"]
    assert list(sel) == ["8", "opq8", "16", "opq16", "32", "opq32", "64", "opq64"]
    assert min(sel.values()) > 0.95
    assert book.info["chosen"] == "8"
    assert book.reduced_dim == 8
    assert report.criterion == CRITERION_TRACK


def test_without_tracks_the_fit_is_the_one_of_before() -> None:
    x = clustered(4000, 5)
    book, report = fit_codebook(x, m=8)
    assert list(book.info["selection"]) == ["8", "16", "32"]  # m, 2m, 4m; PCA only
    assert report.criterion == book.info["criterion"] == CRITERION_KNN
    assert report.track_recall_at_10 is None
    assert "heldout_track_recall_at_10" not in book.info
    assert book.info["chosen"] == str(book.reduced_dim)
    assert report.recall_at_10 == max(book.info["selection"].values())
    assert report.held_out == 400
    explicit, _ = fit_codebook(x, m=8, opq=False)
    assert explicit.content_hash == book.content_hash


def test_tracks_without_far_sightings_fall_back_to_knn_recall() -> None:
    x = clustered(1500, 7)
    t = np.arange(1500)  # every crop a track of its own: nothing to find again
    book, report = fit_codebook(x, m=8, tracks=t, opq=False)
    assert report.criterion == CRITERION_KNN
    assert "opq8" not in book.info["selection"]
    assert list(book.info["selection"]) == ["8", "16", "32"]


def test_bad_track_labels_are_refused_with_a_codec_error() -> None:
    x = clustered(1000, 1)
    with pytest.raises(CodecError, match="tracks must be 1000 integer ids"):
        fit_codebook(x, m=8, tracks=np.arange(999))
    with pytest.raises(CodecError, match="tracks must be 1000 integer ids"):
        fit_codebook(x, m=8, tracks=np.zeros(1000, np.float32))
    with pytest.raises(CodecError, match="times_us must be 1000"):
        fit_codebook(x, m=8, tracks=np.arange(1000), times_us=np.arange(10))
    with pytest.raises(CodecError, match="without tracks"):
        fit_codebook(x, m=8, times_us=np.arange(1000))


# ---------------------------------------------------------------------------- the auto-fit


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


def test_the_auto_fit_chooses_by_same_track_recall_of_catalog_tracks(engine: Engine) -> None:
    int8 = create_codec("int8", DIM)
    codecs = CodecSet()
    store = Store(engine, codecs)
    library = CodebookLibrary(engine, codecs, ttl_s=0.0)
    config = CodebooksConfig(auto_fit_min_vectors=600, auto_fit_m=8)
    fitter = CodebookFitter(engine, library, config)
    session = EdgeSession("edge-01", "s1", store, codebooks=library)

    def send(seq: int, capture_us: int, message: Message) -> None:
        frame = encode(Envelope("edge-01", seq, capture_us, capture_us, message))
        replies = [decode(r).message for r in session.receive(frame)]
        assert not [r for r in replies if isinstance(r, Error)], replies

    send(0, T0, hello(int8))
    x, t, times = tracked(100, 7, hidden=True, seed=4)
    order = np.argsort(times, kind="stable")  # as an edge sends them: in capture order
    for seq, i in enumerate(order, start=1):
        send(seq, int(times[i]), embedding(int(t[i]) + 1, unit_rows(x[i : i + 1])[0], int8))
    # the samples carry the catalog's track of each embedding and its capture time
    space_id = fitter.due()[0][0]
    samples = fitter.samples(space_id, DIM, 10_000)
    assert len(samples) == 700
    assert len(np.unique(samples.tracks)) == 100
    assert (samples.tracks > 0).all()
    assert set(np.unique(samples.times_us)) == set(np.unique(times))
    fitted = fitter.run_once()
    assert [(f.codec_id, f.vectors) for f in fitted] == [("pq8x8", 700)]
    book = library.by_hash(fitted[0].content_hash)
    assert book is not None
    info = book.info
    assert info["criterion"] == CRITERION_TRACK
    assert sorted(info["selection"], key=int) == ["8", "16", "32", "64"]  # no OPQ by default
    assert info["selection"]["8"] < 0.5
    assert int(info["reduced_dim"]) >= 32
