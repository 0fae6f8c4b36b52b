"""Codebooks of more than one code size per encoder space, on SQLite and a real PostgreSQL:
``codebooks.auto_fit_m`` as an int or a list (bad values refused with a precise message), the
auto-fitter fitting each size once, and a session offering the largest code first and the next
smaller one after a refusal (the edge's ``uplink.codebook_max_bytes``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from cloud.codebook_fit import fit_codebook
from cloud.codebooks import CodebookLibrary
from cloud.codebooks_auto import CodebookFitter
from cloud.codebooks_config import CodebooksConfig
from cloud.db import open_database
from cloud.session import EdgeSession
from cloud.store import Store
from edge.codebooks import CodebookReceiver, CodebookStore
from shared.codec import decode
from shared.messages import CodebookAck, CodebookChunk, CodebookOffer, CodebookState, Message
from shared.pq import PQCodec, pq_code_bytes
from shared.vectors import CodecSet
from tests.cloud.test_codebooks import DIM, INT8, clustered, env, hello, send, stored_codebooks


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = open_database(database_url)
    yield e
    e.dispose()


# ---------------------------------------------------------------------------- config


def test_auto_fit_m_takes_an_int_or_a_list_kept_largest_first() -> None:
    assert CodebooksConfig().auto_fit_m == (64, 32)
    assert CodebooksConfig(auto_fit_m=32).auto_fit_m == (32,)
    assert CodebooksConfig.model_validate({"auto_fit_m": [16, 64, 32]}).auto_fit_m == (64, 32, 16)
    assert CodebooksConfig(auto_fit_m=[64, 32], auto_fit_reduced_dim=128).auto_fit_reduced_dim


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "needs at least one code size"),
        ([64, 0], r"code sizes must be 1-256 bytes .* got \[0\]"),
        (300, r"got \[300\]"),
        ([32, 64, 32], "code size 32 is listed twice"),
        ("64", "valid tuple"),
        (True, "valid tuple"),
    ],
)
def test_bad_auto_fit_m_is_refused_naming_the_field(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        CodebooksConfig.model_validate({"auto_fit_m": value})
    assert "auto_fit_m" in str(info.value)


def test_a_reduced_dim_that_is_not_a_multiple_of_every_size_is_refused() -> None:
    with pytest.raises(ValidationError, match="auto_fit_reduced_dim 96 is not a multiple of "):
        CodebooksConfig(auto_fit_m=[64, 32], auto_fit_reduced_dim=96)


def test_the_code_size_is_parsed_strictly_from_the_codec_id() -> None:
    assert pq_code_bytes("pq64x8") == 64
    assert pq_code_bytes("pq8x4") == 4
    for bad in ("int8", "pq", "pq032x8", "pq32x8 ", "pq3x4", "PQ32x8"):
        with pytest.raises(Exception, match="codec id"):
            pq_code_bytes(bad)


# ---------------------------------------------------------------------------- auto-fit


def test_the_fitter_fits_each_code_size_once(engine: Engine) -> None:
    codecs = CodecSet()
    store = Store(engine, codecs)
    library = CodebookLibrary(engine, codecs, ttl_s=0.0)
    config = CodebooksConfig(auto_fit_min_vectors=600, auto_fit_m=[16, 8], auto_fit_reduced_dim=32)
    fitter = CodebookFitter(engine, library, config)
    session = EdgeSession("edge-01", "s1", store, codebooks=library, offer_codebooks=False)
    session.receive(env(0, hello(INT8)))
    send(session, 1, clustered(700, 9), INT8)
    fitted = fitter.run_once()
    assert [(f.space, f.code_bytes, f.codec_id, f.new) for f in fitted] == [
        ("enc-64", 16, "pq16x8", True),
        ("enc-64", 8, "pq8x8", True),
    ]
    assert fitter.run_once() == []  # both sizes fitted: nothing again
    assert stored_codebooks(engine) == 2
    assert library.sizes() == {"enc-64": {16, 8}}
    books = library.newest_each_size("enc-64")
    assert [b.codec_id for b in books] == ["pq16x8", "pq8x8"]
    # a size added to the config later is fitted alone; the others are not fitted again
    wider = CodebookFitter(engine, library, config.model_copy(update={"auto_fit_m": (32, 16, 8)}))
    assert [f.codec_id for f in wider.run_once()] == ["pq32x8"]
    assert wider.run_once() == []
    assert stored_codebooks(engine) == 3


# ---------------------------------------------------------------------------- the push


def _offers(messages: list[Message]) -> list[str]:
    return [m.codec_id for m in messages if isinstance(m, CodebookOffer)]


def _receive(session: EdgeSession, message: Message) -> list[Message]:
    return [decode(r).message for r in session.receive(env(0, message))]


def test_a_session_offers_the_largest_code_first_and_the_next_smaller_after_a_refusal(
    engine: Engine,
) -> None:
    codecs = CodecSet()
    library = CodebookLibrary(engine, codecs, ttl_s=0.0)
    x = clustered(1500, 31)
    big, _ = fit_codebook(x, m=16, reduced_dim=32)
    small, _ = fit_codebook(x, m=8, reduced_dim=32)
    library.save("enc-64", "enc", big)
    library.save("enc-64", "enc", small)
    store = Store(engine, codecs)

    # an edge that takes 16-byte codes: offered pq16x8 alone
    session = EdgeSession("edge-01", "s1", store, codebooks=library)
    assert _offers(_receive(session, hello(INT8))) == ["pq16x8"]
    done = CodebookAck(big.content_hash, CodebookState.INSTALLED, 1)
    assert _receive(session, done) == []

    # an edge that takes at most 8: refuses pq16x8 and is offered pq8x8 in the same reply
    session = EdgeSession("edge-01", "s2", store, codebooks=library)
    assert _offers(_receive(session, hello(INT8))) == ["pq16x8"]
    refused = CodebookAck(big.content_hash, CodebookState.REFUSED, 0, "too large")
    assert _offers(_receive(session, refused)) == ["pq8x8"]
    # the smaller one refused too: nothing more, not even on the next heartbeats
    last = CodebookAck(small.content_hash, CodebookState.REFUSED, 0, "no")
    assert _receive(session, last) == []
    assert session.push is not None
    assert session.push.poll() == []
    assert (session.push.stats.offers, session.push.stats.refused) == (2, 2)

    # an edge whose Hello names either newest codebook gets nothing
    for named in (big, small):
        session = EdgeSession("edge-01", "s3", store, codebooks=library)
        assert _offers(_receive(session, hello(INT8, named))) == []


def test_a_smaller_codebook_fitted_after_a_refusal_is_offered_on_a_heartbeat(
    engine: Engine,
) -> None:
    codecs = CodecSet()
    library = CodebookLibrary(engine, codecs, ttl_s=0.0)
    x = clustered(1500, 41)
    big, _ = fit_codebook(x, m=16, reduced_dim=32)
    library.save("enc-64", "enc", big)  # the fitter stores the largest first
    session = EdgeSession("edge-01", "s1", Store(engine, codecs), codebooks=library)
    assert _offers(_receive(session, hello(INT8))) == ["pq16x8"]
    refused = CodebookAck(big.content_hash, CodebookState.REFUSED, 0, "too large")
    assert _receive(session, refused) == []
    assert session.push is not None
    assert session.push.poll() == []
    small, _ = fit_codebook(x, m=8, reduced_dim=32)
    library.save("enc-64", "enc", small)
    assert _offers(session.push.poll()) == ["pq8x8"]


def _pushed(session: EdgeSession, message: Message) -> list[CodebookOffer | CodebookChunk]:
    """The codebook messages (offers, chunks) among the session's replies to ``message``."""
    return [m for m in _receive(session, message) if isinstance(m, (CodebookOffer, CodebookChunk))]


def _relay(session: EdgeSession, receiver: CodebookReceiver, replies: list[Message]) -> list[int]:
    """Hand the cloud's codebook messages to the edge's receiver and its acks back, until the
    exchange ends; the offsets the edge asked for, in order."""
    wants = []
    pending = [m for m in replies if isinstance(m, (CodebookOffer, CodebookChunk))]
    while pending:
        ack = receiver.answer(pending.pop(0))
        if ack is None:
            continue
        if ack.state is CodebookState.WANT:
            wants.append(ack.offset)
        pending += _pushed(session, ack)
    return wants


def test_a_cloud_restarted_mid_transfer_offers_the_ladder_again_and_the_pull_resumes(
    engine: Engine, tmp_path: Path
) -> None:
    x = clustered(1500, 51)
    big, _ = fit_codebook(x, m=16, reduced_dim=32)
    small, _ = fit_codebook(x, m=8, reduced_dim=32)
    seed = CodebookLibrary(engine, CodecSet(), ttl_s=0.0)
    seed.save("enc-64", "enc", big)
    seed.save("enc-64", "enc", small)
    installs: list[PQCodec] = []
    store = CodebookStore(tmp_path / "books", "enc", DIM)
    receiver = CodebookReceiver(store, installs.append, max_code_bytes=8)

    # the first cloud process: pq16x8 refused, pq8x8 offered; it dies after one chunk
    codecs = CodecSet()
    session = EdgeSession("edge-01", "s1", Store(engine, codecs), codebooks=seed)
    (offer,) = _pushed(session, hello(INT8))
    assert isinstance(offer, CodebookOffer)
    assert offer.codec_id == "pq16x8"
    refused = receiver.answer(offer)
    assert refused is not None
    assert refused.state is CodebookState.REFUSED
    (offer,) = _pushed(session, refused)
    assert isinstance(offer, CodebookOffer)
    assert offer.codec_id == "pq8x8"
    want = receiver.answer(offer)
    assert want is not None
    assert want.offset == 0
    (chunk,) = _pushed(session, want)
    assert isinstance(chunk, CodebookChunk)
    assert receiver.answer(chunk) is not None  # the WANT of the next chunk: never delivered
    have = receiver.have
    assert 0 < have < offer.size

    # a restarted cloud (a new library and session): the ladder again, the pull resumes
    codecs = CodecSet()
    library = CodebookLibrary(engine, codecs, ttl_s=0.0)
    session = EdgeSession("edge-01", "s2", Store(engine, codecs), codebooks=library)
    wants = _relay(session, receiver, _receive(session, hello(INT8)))
    assert wants[0] == have, "the pull did not resume from the partial file"
    assert [b.content_hash for b in installs] == [small.content_hash]
    assert session.push is not None
    stats = session.push.stats
    assert (stats.offers, stats.refused, stats.installed) == (2, 1, 1)
    kept = store.current()
    assert kept is not None
    assert kept.content_hash == small.content_hash
    # its next Hello names pq8x8: nothing is offered
    session = EdgeSession("edge-01", "s3", Store(engine, codecs), codebooks=library)
    assert _offers(_receive(session, hello(INT8, small))) == []
