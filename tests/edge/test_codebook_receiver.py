"""The edge's codebook receiver against hostile or broken input: nothing is switched unless the
whole file arrived in order and its content hash is the one offered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.codebooks import CodebookReceiver, CodebookStore
from edge.errors import CodebookTransferError
from shared import limits
from shared.codec import decode, encode
from shared.errors import DecodeError
from shared.messages import (
    CodebookAck,
    CodebookChunk,
    CodebookOffer,
    CodebookState,
    Envelope,
)
from shared.pq import PQCodec, fit_pq

DIM = 32


@pytest.fixture(scope="module")
def book() -> PQCodec:
    x = np.random.default_rng(0).standard_normal((600, DIM)).astype(np.float32)
    return fit_pq(x, m=4, reduced_dim=8, kmeans_iters=3)


class Installs:
    def __init__(self) -> None:
        self.books: list[PQCodec] = []

    def __call__(self, book: PQCodec) -> None:
        self.books.append(book)


def receiver(tmp_path: Path) -> tuple[CodebookReceiver, Installs]:
    installs = Installs()
    return CodebookReceiver(CodebookStore(tmp_path / "books", "enc", DIM), installs), installs


def offer_of(book: PQCodec, data: bytes, encoder: str = "enc") -> CodebookOffer:
    return CodebookOffer(book.codec_id, book.content_hash, len(data), encoder, DIM)


def pull(r: CodebookReceiver, book: PQCodec, data: bytes, step: int = 1000) -> CodebookAck:
    ack = r.offer(offer_of(book, data))
    while ack.state is CodebookState.WANT:
        ack = r.chunk(
            CodebookChunk(book.content_hash, ack.offset, data[ack.offset : ack.offset + step])
        )
    return ack


def test_a_whole_verified_file_is_installed_kept_and_current_after_a_restart(
    tmp_path: Path, book: PQCodec
) -> None:
    r, installs = receiver(tmp_path)
    ack = pull(r, book, book.to_bytes())
    assert ack.state is CodebookState.INSTALLED
    assert [b.content_hash for b in installs.books] == [book.content_hash]
    kept = CodebookStore(tmp_path / "books", "enc", DIM).current()
    assert kept is not None
    assert kept.content_hash == book.content_hash
    # offered again (a new session): installed at once from the kept file, nothing fetched
    again, installs2 = receiver(tmp_path)
    ack = again.offer(offer_of(book, book.to_bytes()))
    assert ack.state is CodebookState.INSTALLED
    assert len(installs2.books) == 1
    # another encoder's current codebook is another entry
    assert CodebookStore(tmp_path / "books", "other", DIM).current() is None


def test_a_transfer_resumes_from_the_partial_file(tmp_path: Path, book: PQCodec) -> None:
    data = book.to_bytes()
    r, _ = receiver(tmp_path)
    ack = r.offer(offer_of(book, data))
    ack = r.chunk(CodebookChunk(book.content_hash, 0, data[:3000]))
    assert (ack.state, ack.offset) == (CodebookState.WANT, 3000)
    # the connection drops; the next session's offer resumes at 3000
    resumed, installs = receiver(tmp_path)
    ack = resumed.offer(offer_of(book, data))
    assert (ack.state, ack.offset) == (CodebookState.WANT, 3000)
    while ack.state is CodebookState.WANT:
        ack = resumed.chunk(
            CodebookChunk(book.content_hash, ack.offset, data[ack.offset : ack.offset + 4000])
        )
    assert ack.state is CodebookState.INSTALLED
    assert len(installs.books) == 1


def test_chunks_not_asked_for_raise_and_write_nothing(tmp_path: Path, book: PQCodec) -> None:
    data = book.to_bytes()
    r, installs = receiver(tmp_path)
    r.offer(offer_of(book, data))
    part = tmp_path / "books" / f"{book.content_hash.hex()}.part"
    with pytest.raises(CodebookTransferError, match="not being received"):
        r.chunk(CodebookChunk(b"\x07" * 32, 0, data[:100]))
    with pytest.raises(CodebookTransferError, match="offset 100, expected 0"):
        r.chunk(CodebookChunk(book.content_hash, 100, data[100:200]))
    with pytest.raises(CodebookTransferError, match="past the offered"):
        r.chunk(CodebookChunk(book.content_hash, 0, data + b"x"))
    assert not part.exists() or part.stat().st_size == 0
    assert installs.books == []


def test_a_file_whose_hash_is_not_the_offered_one_is_refused_and_deleted(
    tmp_path: Path, book: PQCodec
) -> None:
    other = fit_pq(
        np.random.default_rng(1).standard_normal((600, DIM)).astype(np.float32),
        m=4,
        reduced_dim=8,
        kmeans_iters=3,
    )
    data = other.to_bytes()  # a valid codebook, but not the one offered
    r, installs = receiver(tmp_path)
    ack = r.offer(CodebookOffer(book.codec_id, book.content_hash, len(data), "enc", DIM))
    while ack.state is CodebookState.WANT:
        ack = r.chunk(
            CodebookChunk(book.content_hash, ack.offset, data[ack.offset : ack.offset + 5000])
        )
    assert ack.state is CodebookState.REFUSED
    assert "does not verify" in ack.reason
    assert installs.books == []
    assert list((tmp_path / "books").iterdir()) == []
    # bytes that are no codebook at all
    junk = b"\x00" * 2000
    r2, installs2 = receiver(tmp_path)
    ack = r2.offer(CodebookOffer(book.codec_id, book.content_hash, len(junk), "enc", DIM))
    ack = r2.chunk(CodebookChunk(book.content_hash, 0, junk))
    assert ack.state is CodebookState.REFUSED
    assert installs2.books == []
    assert CodebookStore(tmp_path / "books", "enc", DIM).current() is None


def test_an_offer_for_another_encoder_is_refused(tmp_path: Path, book: PQCodec) -> None:
    r, installs = receiver(tmp_path)
    ack = r.offer(offer_of(book, book.to_bytes(), encoder="someone-else"))
    assert ack.state is CodebookState.REFUSED
    assert "someone-else" in ack.reason
    assert r.receiving is None
    assert installs.books == []


def test_an_oversized_offer_or_chunk_does_not_decode(book: PQCodec) -> None:
    good = CodebookOffer(book.codec_id, book.content_hash, limits.MAX_CODEBOOK_BYTES, "enc", DIM)
    frame = encode(Envelope("cloud", 0, 1, 1, good))
    assert decode(frame).message == good
    # the same frame claiming one byte more: a typed decode error, never a message
    big = frame.replace(
        limits.MAX_CODEBOOK_BYTES.to_bytes(4, "big"),
        (limits.MAX_CODEBOOK_BYTES + 1).to_bytes(4, "big"),
    )
    assert big != frame
    with pytest.raises(DecodeError, match="size"):
        decode(big)
    with pytest.raises(DecodeError):
        decode(
            encode(Envelope("cloud", 0, 1, 1, CodebookChunk(book.content_hash, 0, b"x" * 100)))[
                :-40
            ]
        )


def test_a_codebook_set_aside_is_no_longer_current_and_its_file_is_kept(
    tmp_path: Path, book: PQCodec
) -> None:
    r, _ = receiver(tmp_path)
    assert pull(r, book, book.to_bytes()).state is CodebookState.INSTALLED
    store = CodebookStore(tmp_path / "books", "enc", DIM)
    aside = store.set_aside(book)
    assert aside == store.aside_path(book)
    assert store.current() is None  # a restart does not announce it again
    assert not store.path(book.content_hash, ".npz").exists()
    assert aside.read_bytes() == book.to_bytes()  # kept whole, for an operator
    assert store.set_aside(book) == aside  # idempotent (a crash, then the next refusal)
    assert aside.exists()
    # offered again (a cloud that has it again): fetched and current as before
    again, installs = receiver(tmp_path)
    assert pull(again, book, book.to_bytes()).state is CodebookState.INSTALLED
    assert len(installs.books) == 1
    assert store.current() is not None
