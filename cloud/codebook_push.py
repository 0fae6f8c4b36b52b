"""One session's side of pushing a fitted codebook down to its edge (no I/O).

After the Hello, and on each heartbeat until one was made, the session offers the newest
codebook of the edge's encoder space when the Hello does not announce it already
(:class:`~shared.messages.CodebookOffer`). The edge pulls the file: each
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
        self._done = False  # installed or refused: nothing more to offer this session

    def start(self, hello: Hello, space: str) -> list[Message]:
        """The session's Hello was accepted: an offer, if the space has a newer codebook."""
        self._hello, self._space = hello, space
        return self.poll()

    def poll(self) -> list[Message]:
        """An offer when one is due (after the Hello, then on each heartbeat)."""
        if self._hello is None or self._offered is not None or self._done:
            return []
        book = self.library.newest(self._space)
        if book is None:
            return []
        if any(ref.content_hash == book.content_hash for ref in self._hello.codecs):
            self._done = True  # the edge uses it already
            return []
        self._offered = book
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
            self._done, self._offered = True, None
            logger.warning(
                "edge %s refused codebook %s: %s",
                self.edge_id,
                book.content_hash.hex()[:12],
                ack.reason,
            )
            return []
        if ack.offset >= book.size:
            raise PushError(f"CodebookAck wants offset {ack.offset} of a {book.size}-byte file")
        data = book.chunk(ack.offset, self.chunk_bytes)
        self.stats.chunks += 1
        self.stats.chunk_bytes += len(data)
        return [CodebookChunk(book.content_hash, ack.offset, data)]
