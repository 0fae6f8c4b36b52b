"""One session's side of pushing a fitted codebook down to its edge (no I/O).

After the Hello, and on each heartbeat until one was installed, the session offers the edge's
encoder space's newest codebook of each code size, largest code first
(:class:`~shared.messages.CodebookOffer`): an edge answers ``REFUSED`` to a code larger than its
``uplink.codebook_max_bytes``, and is then offered the next smaller one in the same session,
until one is ``INSTALLED`` or all were refused. A Hello that already names one of those newest
codebooks gets nothing. The cloud does not know an edge's max beforehand: it learns it from a
refusal, and offers no code of that size or larger again in the session.

The edge pulls the file: each
:class:`~shared.messages.CodebookAck` in state ``WANT`` names the offset it has (it keeps a
partial file across reconnects, so a transfer resumes) and is answered with the next
:class:`~shared.messages.CodebookChunk`; ``INSTALLED`` and ``REFUSED`` end it. Every one of
these messages is a seq 0 control message: never stored, never acknowledged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cloud.codebooks import CodebookLibrary, StoredCodebook
from shared import limits
from shared.messages import (
    CodebookAck,
    CodebookChunk,
    CodebookOffer,
    CodebookState,
    Hello,
    Message,
)

logger = logging.getLogger(__name__)


class PushError(Exception):
    """A CodebookAck the session cannot answer (unknown hash, offset past the file)."""


@dataclass
class PushStats:
    offers: int = 0
    chunks: int = 0
    chunk_bytes: int = 0
    installed: int = 0
    refused: int = 0


class CodebookPush:
    def __init__(
        self,
        library: CodebookLibrary,
        edge_id: str,
        chunk_bytes: int = limits.MAX_CODEBOOK_CHUNK_BYTES,
    ) -> None:
        self.library = library
        self.edge_id = edge_id
        self.chunk_bytes = chunk_bytes
        self.stats = PushStats()
        self._hello: Hello | None = None
        self._space = ""
        self._offered: StoredCodebook | None = None
        self._tried: set[bytes] = set()  # content hashes offered this session
        self._below: int | None = None  # a code of this many bytes was refused: offer smaller
        self._done = False  # installed, or the edge uses one: nothing more to offer

    def start(self, hello: Hello, space: str) -> list[Message]:
        """The session's Hello was accepted: an offer, if the space has a newer codebook."""
        self._hello, self._space = hello, space
        return self.poll()

    def poll(self) -> list[Message]:
        """An offer when one is due (after the Hello, after a refusal, then on each heartbeat):
        the largest code not refused yet of the space's newest codebooks."""
        if self._hello is None or self._offered is not None or self._done:
            return []
        books = self.library.newest_each_size(self._space)
        named = {ref.content_hash for ref in self._hello.codecs}
        if any(b.content_hash in named for b in books):
            self._done = True  # the edge uses one already
            return []
        below = self._below
        due = [
            b
            for b in books
            if b.content_hash not in self._tried and (below is None or b.code_bytes < below)
        ]
        if not due:
            return []
        book = due[0]
        self._offered = book
        self._tried.add(book.content_hash)
        self.stats.offers += 1
        logger.info(
            "edge %s: offering codebook %s %s (%d bytes)",
            self.edge_id,
            book.codec_id,
            book.content_hash.hex()[:12],
            book.size,
        )
        return [
            CodebookOffer(
                book.codec_id, book.content_hash, book.size, self._hello.encoder, book.dim
            )
        ]

    def on_ack(self, ack: CodebookAck) -> list[Message]:
        """Answer the edge: the next chunk for ``WANT``; nothing for the end states.

        Raises :class:`PushError` for an ack of a codebook this session did not offer or an
        offset past its end.
        """
        book = self._offered
        if book is None or ack.content_hash != book.content_hash:
            raise PushError(
                f"CodebookAck for {ack.content_hash.hex()[:16]}..., which this session did not "
                "offer"
            )
        if ack.state is CodebookState.INSTALLED:
            self.stats.installed += 1
            self._done, self._offered = True, None
            logger.info(
                "edge %s installed codebook %s %s",
                self.edge_id,
                book.codec_id,
                book.content_hash.hex()[:12],
            )
            return []
        if ack.state is CodebookState.REFUSED:
            self.stats.refused += 1
            self._offered = None
            size = book.code_bytes
            self._below = size if self._below is None else min(self._below, size)
            logger.warning(
                "edge %s refused codebook %s %s: %s",
                self.edge_id,
                book.codec_id,
                book.content_hash.hex()[:12],
                ack.reason,
            )
            return self.poll()  # the next smaller code, if the space has one
        if ack.offset >= book.size:
            raise PushError(f"CodebookAck wants offset {ack.offset} of a {book.size}-byte file")
        data = book.chunk(ack.offset, self.chunk_bytes)
        self.stats.chunks += 1
        self.stats.chunk_bytes += len(data)
        return [CodebookChunk(book.content_hash, ack.offset, data)]
