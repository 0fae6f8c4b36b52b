"""Codebooks the cloud fits (faiss), stores by content hash and offers, on SQLite and a real
PostgreSQL: the conversion to shared.pq matches faiss, fitting waits for enough embeddings and
happens once, codes of two codebooks of one space decode into the same vector space, and a
session answers a codebook ack it did not offer with a typed error."""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from cloud.catalog_vectors import CatalogVectors
from cloud.codebook_fit import fit_codebook, to_pqcodec, train_faiss, unit_rows
from cloud.codebooks import CodebookLibrary
from cloud.codebooks_auto import CodebookFitter
from cloud.codebooks_config import CodebooksConfig
from cloud.db import open_database
from cloud.schema import codebooks
from cloud.session import EdgeSession
from cloud.store import Store
from shared.codec import decode, encode
from shared.errors import CodecError
from shared.geometry import Box
from shared.messages import (
    CameraInfo,
    CodebookAck,
    CodebookChunk,
    CodebookOffer,
    CodebookState,
    CodecRef,
    Embedding,
    EmitReason,
    Envelope,
    Error,
    ErrorCode,
    Hello,
    Message,
)
from shared.pq import knn_recall
from shared.vectors import CodecSet, VectorCodec, create_codec, fingerprint

DIM = 64
INT8 = create_codec("int8", DIM)
T0 = 1_700_000_000_000_000


def clustered(n: int, seed: int, dim: int = DIM, spread: float = 0.35) -> np.ndarray:
    """Unit vectors around 40 centres: embeddings of a few kinds of object, like a scene's."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((40, dim)).astype(np.float32)
    x = centres[rng.integers(40, size=n)] + spread * rng.standard_normal((n, dim)).astype("f4")
    return unit_rows(x)


# ---------------------------------------------------------------------------- fitting


def test_the_converted_codebook_encodes_and_decodes_as_faiss_does() -> None:
    train, held = clustered(3000, 1), clustered(500, 2)
    pca, pq = train_faiss(train, 8, 32, seed=3)
    book = to_pqcodec(pca, pq)
    theirs = pq.compute_codes(np.ascontiguousarray(pca.apply(held)))
    ours = book.encode(held)
    assert ours.shape == theirs.shape == (500, 8)
    assert (ours == theirs).mean() > 0.999  # float ties at most
    # decoding: the same point of the reduced space (faiss's reverse_transform drops the
    # mean's component outside it; the PQCodec adds the whole mean back, as PCA should)
    decoded = book.decode(theirs)
    np.testing.assert_allclose(book.project(decoded), pq.decode(theirs), atol=1e-5)
    mean = faiss.vector_to_array(pca.mean)
    np.testing.assert_allclose(
        decoded - mean,
        pca.reverse_transform(pq.decode(theirs)) - mean @ book.projection @ book.projection.T,
        atol=1e-5,
    )


def test_a_fit_reports_held_out_recall_well_above_chance_and_is_deterministic() -> None:
    x = clustered(4000, 5)
    book, report = fit_codebook(x, m=8)
    assert book.codec_id == "pq8x8"
    assert book.reduced_dim in (8, 16, 32)
    assert report.held_out == 400
    assert report.train == 3600
    assert report.recall_at_10 > 0.6
    assert report.cosine_mean > 0.8
    # measured again here, on vectors the fit never saw
    fresh = clustered(1000, 6)
    ratio = knn_recall(fresh[100:], book.decode(book.encode(fresh[100:])), fresh[:100])
    shuffled = knn_recall(
        fresh[100:], np.random.default_rng(0).permutation(fresh[100:]), fresh[:100]
    )
    assert ratio > 0.45  # a larger base than the fit's held-out share: a little lower
    assert shuffled < 0.05  # what a codebook that kept no meaning would score
    again, _ = fit_codebook(x, m=8)
    assert again.content_hash == book.content_hash


def test_bad_samples_are_refused_with_a_codec_error() -> None:
    with pytest.raises(CodecError, match="at least"):
        fit_codebook(clustered(200, 1), m=8)
    with pytest.raises(CodecError, match="multiple"):
        fit_codebook(clustered(1000, 1), m=8, reduced_dim=12)
    bad = clustered(1000, 1)
    bad[3, 3] = np.nan
    with pytest.raises(CodecError, match="finite"):
        fit_codebook(bad, m=8)


# ---------------------------------------------------------------------------- the catalog


def env(seq: int, message: Message) -> bytes:
    return encode(Envelope("edge-01", seq, T0 + seq, T0 + seq, message))


def hello(*codecs: VectorCodec) -> Hello:
    return Hello(
        "0.1.0",
        "yolo11n",
        "enc",
        DIM,
        tuple(CodecRef(c.codec_id, c.content_hash) for c in codecs),
        (CameraInfo("cam-a", 640, 360, 25.0),),
        False,
    )


def embedding(track: int, vector: np.ndarray, codec: VectorCodec) -> Embedding:
    return Embedding(
        "cam-a",
        track,
        EmitReason.FIRST_SIGHT,
        2,
        0.8,
        Box(0.1, 0.1, 0.2, 0.2),
        fingerprint(codec),
        codec.encode(vector).tobytes(),
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


def send(session: EdgeSession, first_seq: int, vectors: np.ndarray, codec: VectorCodec) -> None:
    for i, v in enumerate(vectors):
        replies = [
            decode(r).message
            for r in session.receive(env(first_seq + i, embedding(first_seq + i, v, codec)))
        ]
        assert not [r for r in replies if isinstance(r, Error)], replies


def stored_codebooks(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(codebooks)).scalar_one())


def test_the_cloud_fits_once_enough_universal_embeddings_arrived_and_only_once(
    engine: Engine,
) -> None:
    codecs = CodecSet()
    store = Store(engine, codecs)
    library = CodebookLibrary(engine, codecs, ttl_s=0.0)
    config = CodebooksConfig(auto_fit_min_vectors=600, auto_fit_m=8, auto_fit_reduced_dim=32)
    fitter = CodebookFitter(engine, library, config)
    session = EdgeSession("edge-01", "s1", store, codebooks=library)
    assert not [
        m
        for m in (decode(r).message for r in session.receive(env(0, hello(INT8))))
        if isinstance(m, Error)
    ]
    x = clustered(700, 9)
    send(session, 1, x[:500], INT8)
    assert fitter.run_once() == []  # 500 < 600: nothing happens
    assert stored_codebooks(engine) == 0
    send(session, 501, x[500:], INT8)
    fitted = fitter.run_once()
    assert [(f.space, f.codec_id, f.vectors, f.new) for f in fitted] == [
        ("enc-64", "pq8x8", 700, True)
    ]
    assert fitter.run_once() == []  # the space has its codebook: not fitted again
    assert stored_codebooks(engine) == 1
    newest = library.newest("enc-64")
    assert newest is not None
    assert newest.content_hash == fitted[0].content_hash
    assert fingerprint(library.by_hash(newest.content_hash)) in codecs  # type: ignore[arg-type]
    # a restarted cloud (another replica) loads it before any session
    fresh = CodecSet()
    assert CodebookLibrary(engine, fresh).load_all() == 1
    assert len(fresh) == 1


def test_codes_of_two_codebooks_of_one_space_decode_into_one_searchable_space(
    engine: Engine,
) -> None:
    codecs = CodecSet()
    store = Store(engine, codecs)
    library = CodebookLibrary(engine, codecs, ttl_s=0.0)
    a, _ = fit_codebook(clustered(2000, 11), m=8, reduced_dim=32)
    b, _ = fit_codebook(clustered(2000, 12), m=16, reduced_dim=32)
    assert a.content_hash != b.content_hash
    library.save("enc-64", "enc", a)
    library.save("enc-64", "enc", b)
    session = EdgeSession("edge-01", "s1", store, codebooks=library, offer_codebooks=False)
    session.receive(env(0, hello(INT8, a, b)))
    x = clustered(90, 13)
    send(session, 1, x[:30], INT8)
    send(session, 31, x[30:60], a)
    send(session, 61, x[60:], b)
    reader = CatalogVectors(engine, codecs)
    (space,) = reader.spaces()
    batch = reader.read(space, reader.ids(space.id))
    assert len(batch.ids) == 90
    assert reader.skipped_undecodable == 0
    vectors = unit_rows(np.concatenate(batch.vectors))
    order = np.argsort(batch.ids)
    vectors = vectors[order]
    # each vector, whatever its codec, finds the original it came from as its nearest
    assert ((vectors @ x.T).argmax(axis=1) == np.arange(90)).mean() > 0.9
    # another replica's index, whose codec set never saw either codebook, reads them too
    follower = CatalogVectors(engine, CodecSet())
    (space,) = follower.spaces()
    assert len(follower.read(space, follower.ids(space.id)).ids) == 90
    assert follower.skipped_undecodable == 0


def test_a_codebook_ack_the_session_did_not_offer_gets_a_typed_error(engine: Engine) -> None:
    codecs = CodecSet()
    library = CodebookLibrary(engine, codecs, ttl_s=0.0)
    book, _ = fit_codebook(clustered(1000, 21), m=8, reduced_dim=32)
    library.save("enc-64", "enc", book)
    session = EdgeSession("edge-01", "s1", Store(engine, codecs), codebooks=library)
    replies = [decode(r).message for r in session.receive(env(0, hello(INT8)))]
    offers = [m for m in replies if isinstance(m, CodebookOffer)]
    assert [(o.codec_id, o.content_hash, o.dim) for o in offers] == [
        ("pq8x8", book.content_hash, DIM)
    ]
    stranger = CodebookAck(b"\x01" * 32, CodebookState.WANT, 0)
    (error,) = [decode(r).message for r in session.receive(env(0, stranger))]
    assert isinstance(error, Error)
    assert error.code is ErrorCode.BAD_MESSAGE
    assert not error.fatal
    past = CodebookAck(book.content_hash, CodebookState.WANT, offers[0].size)
    (error,) = [decode(r).message for r in session.receive(env(0, past))]
    assert isinstance(error, Error)
    assert "offset" in error.message
    # the edge pulls the whole file, chunk by chunk, and it is the codebook byte for byte
    data, offset = b"", 0
    while offset < offers[0].size:
        ack = CodebookAck(book.content_hash, CodebookState.WANT, offset)
        (chunk,) = [decode(r).message for r in session.receive(env(0, ack))]
        assert isinstance(chunk, CodebookChunk)
        assert chunk.offset == offset
        data += chunk.data
        offset += len(chunk.data)
    assert data == book.to_bytes()
    done = CodebookAck(book.content_hash, CodebookState.INSTALLED, offset)
    assert session.receive(env(0, done)) == []
    assert session.push is not None
    assert session.push.stats.installed == 1
