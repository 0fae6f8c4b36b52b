"""The codebooks the cloud fitted, stored by content hash, and what an edge is sent of them.

A row of ``codebooks`` holds the codebook's ``.npz`` file (:meth:`shared.pq.PQCodec.save`),
the encoder space it was fitted for (the space name, as in ``spaces.name``) and how it was
fitted. Every stored codebook is added to the cloud's :class:`~shared.vectors.CodecSet` at
start-up and when it is fitted or first named by an edge's Hello, so the journal, the index
and the decoder decode codes of every codebook of a space (each code names its codec by
fingerprint; all decode to vectors of the same space).

Thread-safe: reads use a connection each; the small cache of each space's newest codebooks is
refreshed every ``ttl_s`` so a codebook another replica fitted is offered soon after.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cloud.schema import codebooks
from shared.errors import CodebookError, CodecError
from shared.pq import PQCodec, load_codebook, pq_code_bytes
from shared.vectors import CodecSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredCodebook:
    """A stored codebook as it is sent: its file bytes and what names it."""

    content_hash: bytes
    codec_id: str
    space: str
    encoder: str
    dim: int
    file: bytes
    info: dict[str, object]
    created_us: int

    @property
    def size(self) -> int:
        return len(self.file)

    @property
    def code_bytes(self) -> int:
        """Bytes per code (from the codec id, ``pqMxB``)."""
        return pq_code_bytes(self.codec_id)

    def chunk(self, offset: int, max_bytes: int) -> bytes:
        """The file's bytes from ``offset`` (at most ``max_bytes``; empty past the end)."""
        return self.file[offset : offset + max_bytes]


def read_codebook_file(data: bytes, where: str = "<bytes>") -> PQCodec:
    """A codebook from its ``.npz`` bytes, with its recorded hash verified."""
    try:
        return load_codebook(io.BytesIO(data))
    except CodebookError as exc:
        raise CodebookError(where, exc.reason) from None


class CodebookLibrary:
    def __init__(self, engine: Engine, codecs: CodecSet, ttl_s: float = 10.0) -> None:
        self.engine = engine
        self.codecs = codecs
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        # space -> (at, the newest codebook of each code size, largest code first)
        self._newest: dict[str, tuple[float, tuple[StoredCodebook, ...]]] = {}

    def load_all(self) -> int:
        """Add every stored codebook to the codec set (start-up); returns how many."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(codebooks.c.content_hash, codebooks.c.file)).all()
        for row in rows:
            self.codecs.add(
                read_codebook_file(bytes(row.file), f"codebook {row.content_hash.hex()}")
            )
        return len(rows)

    def save(self, space: str, encoder: str, book: PQCodec) -> bool:
        """Store ``book`` for ``space`` (idempotent: False when it was stored already) and add
        it to the codec set."""
        row = {
            "content_hash": book.content_hash,
            "codec_id": book.codec_id,
            "space": space,
            "encoder": encoder,
            "dim": book.dim,
            "file": book.to_bytes(),
            "info": book.info,
            "created_us": time.time_ns() // 1_000,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(codebooks.insert().values(**row))
            new = True
        except IntegrityError:  # the same codebook (same content hash) is stored already
            new = False
        self.codecs.add(book)
        with self._lock:
            self._newest.pop(space, None)
        return new

    def spaces(self) -> set[str]:
        """Spaces that have a codebook."""
        with self.engine.connect() as conn:
            return {str(s) for s in conn.execute(select(codebooks.c.space).distinct()).scalars()}

    def sizes(self) -> dict[str, set[int]]:
        """The code sizes (bytes per code) each space has a codebook of."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(codebooks.c.space, codebooks.c.codec_id).distinct()).all()
        out: dict[str, set[int]] = {}
        for space, codec_id in rows:
            size = _code_bytes(str(codec_id))
            if size is not None:
                out.setdefault(str(space), set()).add(size)
        return out

    def newest(self, space: str) -> StoredCodebook | None:
        """The newest codebook of ``space`` (None: none fitted), cached for ``ttl_s``."""
        books = self.newest_each_size(space)
        return max(books, key=lambda b: b.created_us) if books else None

    def newest_each_size(self, space: str) -> tuple[StoredCodebook, ...]:
        """The newest codebook of each code size of ``space``, largest code first (empty: none
        fitted), cached for ``ttl_s``: what a session offers, one after another."""
        now = time.monotonic()
        with self._lock:
            cached = self._newest.get(space)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        with self.engine.connect() as conn:
            heads = conn.execute(
                select(codebooks.c.content_hash, codebooks.c.codec_id)
                .where(codebooks.c.space == space)
                .order_by(codebooks.c.created_us.desc(), codebooks.c.content_hash)
            ).all()
            chosen: dict[int, bytes] = {}
            for content_hash, codec_id in heads:
                size = _code_bytes(str(codec_id))
                if size is not None and size not in chosen:
                    chosen[size] = bytes(content_hash)
            rows = (
                conn.execute(
                    select(codebooks).where(codebooks.c.content_hash.in_(list(chosen.values())))
                ).all()
                if chosen
                else []
            )
        by_hash = {bytes(r._mapping["content_hash"]): _stored(r) for r in rows}
        found = tuple(by_hash[h] for _, h in sorted(chosen.items(), reverse=True) if h in by_hash)
        for book in found:
            if _fingerprint(book.content_hash) not in self.codecs:
                where = f"codebook {book.content_hash.hex()}"
                self.codecs.add(read_codebook_file(book.file, where))
        with self._lock:
            self._newest[space] = (now, found)
        return found

    def by_hash(self, content_hash: bytes) -> PQCodec | None:
        """The stored codebook with this content hash, added to the codec set (a Hello naming
        a codebook another replica fitted); None when none is stored."""
        with self.engine.connect() as conn:
            data = conn.execute(
                select(codebooks.c.file).where(codebooks.c.content_hash == content_hash)
            ).scalar()
        if data is None:
            return None
        book = read_codebook_file(bytes(data), f"codebook {content_hash.hex()}")
        self.codecs.add(book)
        return book


def _code_bytes(codec_id: str) -> int | None:
    """Bytes per code of a stored codebook's id (None, logged, for an id without a size)."""
    try:
        return pq_code_bytes(codec_id)
    except CodecError as exc:
        logger.warning("stored codebook skipped: %s", exc)
        return None


def _fingerprint(content_hash: bytes) -> int:
    return int.from_bytes(content_hash[:4], "little")  # as shared.vectors.fingerprint


def _stored(row: object) -> StoredCodebook:
    r = row._mapping  # type: ignore[attr-defined]
    return StoredCodebook(
        bytes(r["content_hash"]),
        str(r["codec_id"]),
        str(r["space"]),
        str(r["encoder"]),
        int(r["dim"]),
        bytes(r["file"]),
        dict(r["info"] or {}),
        int(r["created_us"]),
    )
