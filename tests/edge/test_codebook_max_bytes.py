"""The edge's ``uplink.codebook_max_bytes``: an offered codebook whose code is larger is refused
with a reason naming the size and the setting, an offer whose codec id names no code size is
refused saying so, and one within the limit is pulled and installed as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge.codebooks import CodebookReceiver, CodebookStore
from edge.config import UplinkConfig
from shared.messages import CodebookChunk, CodebookOffer, CodebookState
from shared.pq import PQCodec, fit_pq

DIM = 32


@pytest.fixture(scope="module")
def books() -> dict[int, PQCodec]:
    x = np.random.default_rng(0).standard_normal((600, DIM)).astype(np.float32)
    return {m: fit_pq(x, m=m, reduced_dim=16, kmeans_iters=3) for m in (8, 4)}


def receiver(tmp_path: Path, max_code_bytes: int) -> tuple[CodebookReceiver, list[PQCodec]]:
    installs: list[PQCodec] = []
    store = CodebookStore(tmp_path / "books", "enc", DIM)
    return CodebookReceiver(store, installs.append, max_code_bytes), installs


def offer(book: PQCodec, codec_id: str | None = None) -> CodebookOffer:
    data = book.to_bytes()
    return CodebookOffer(codec_id or book.codec_id, book.content_hash, len(data), "enc", DIM)


def test_a_larger_code_is_refused_naming_its_size_and_the_setting(
    tmp_path: Path, books: dict[int, PQCodec]
) -> None:
    r, installs = receiver(tmp_path, max_code_bytes=4)
    ack = r.offer(offer(books[8]))
    assert ack.state is CodebookState.REFUSED
    assert ack.content_hash == books[8].content_hash
    assert ack.reason == (
        "pq8x8 codes are 8 bytes, more than this edge's uplink.codebook_max_bytes (4)"
    )
    assert r.receiving is None
    assert not (tmp_path / "books").exists(), "nothing is fetched or kept for a refused offer"
    # the next smaller one is taken: pulled, verified, installed
    data = books[4].to_bytes()
    want = r.offer(offer(books[4]))
    assert want.state is CodebookState.WANT
    states = []
    while want.state is CodebookState.WANT:
        part = data[want.offset : want.offset + 8000]
        want = r.chunk(CodebookChunk(books[4].content_hash, want.offset, part))
        states.append(want.state)
    assert states[-1] is CodebookState.INSTALLED
    assert [b.codec_id for b in installs] == ["pq4x8"]


def test_a_code_of_exactly_the_max_is_taken(tmp_path: Path, books: dict[int, PQCodec]) -> None:
    r, _ = receiver(tmp_path, max_code_bytes=8)
    assert r.offer(offer(books[8])).state is CodebookState.WANT


@pytest.mark.parametrize("codec_id", ["int8", "pq8", "pq08x8", "pq3x4", "pq8x8x"])
def test_an_offer_without_a_code_size_in_its_codec_id_is_refused_saying_so(
    tmp_path: Path, books: dict[int, PQCodec], codec_id: str
) -> None:
    r, installs = receiver(tmp_path, max_code_bytes=64)
    ack = r.offer(offer(books[8], codec_id))
    assert ack.state is CodebookState.REFUSED
    assert ack.reason.startswith(f"no code size in the offer: codec id {codec_id!r}")
    assert installs == []


def test_the_setting_defaults_to_64_and_must_be_positive(tmp_path: Path) -> None:
    base = {"cloud": "http://127.0.0.1:1", "token": "t", "spool_path": tmp_path / "spool.db"}
    assert UplinkConfig.model_validate(base).codebook_max_bytes == 64
    assert UplinkConfig.model_validate(base | {"codebook_max_bytes": 32}).codebook_max_bytes == 32
    with pytest.raises(ValidationError, match="codebook_max_bytes"):
        UplinkConfig.model_validate(base | {"codebook_max_bytes": 0})
