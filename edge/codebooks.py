"""The edge's side of a codebook push: receive, verify, keep, and say which one is in use.

The cloud offers a codebook it fitted for this edge's encoder space
(:class:`~shared.messages.CodebookOffer`); the edge pulls the file chunk by chunk, each
:class:`~shared.messages.CodebookAck` in state ``WANT`` naming the offset it has. The partial
file is kept in the state directory (next to the spool) as ``<hash>.part``, so a transfer
resumes after a reconnect. When the last byte arrived, the file is loaded and its content hash
checked against the offer (:func:`shared.pq.load_codebook` also checks the hash it records);
only then is it renamed to ``<hash>.npz``, recorded as this encoder's current codebook
(``current.json``), and handed to ``install`` (the composition root switches the pipeline to
it, see :mod:`edge.daemon`). A restarted edge finds the current codebook with
:meth:`CodebookStore.current` and uses it at once.

An offer whose code is larger than ``uplink.codebook_max_bytes`` (bytes per code, parsed
strictly from its codec id ``pqMxB``: the offer carries no other size) is refused with a reason
naming both; the cloud then offers its next smaller codebook (:mod:`cloud.codebook_push`).

Wrong input never switches anything: a chunk of another codebook, at another offset than the
one asked for, or past the offered size raises :class:`~edge.errors.CodebookTransferError`;
a file whose hash does not match is deleted and refused.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from edge.errors import CodebookTransferError
from shared import limits
from shared.errors import CodebookError, CodecError
from shared.messages import CodebookAck, CodebookChunk, CodebookOffer, CodebookState
from shared.pq import PQCodec, load_codebook, pq_code_bytes

logger = logging.getLogger(__name__)

CURRENT = "current.json"
#: where codebooks the cloud turned out not to have are kept (see :meth:`CodebookStore.set_aside`)
ASIDE = "set-aside"


class CodebookStore:
    """The codebooks this edge received, in ``directory``; one current per (encoder, dim)."""

    def __init__(self, directory: Path, encoder: str, dim: int) -> None:
        self.directory = directory
        self.encoder = encoder
        self.dim = dim

    @property
    def _key(self) -> str:
        return f"{self.encoder}/{self.dim}"

    def _index(self) -> dict[str, str]:
        try:
            data = json.loads((self.directory / CURRENT).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def current(self) -> PQCodec | None:
        """This encoder's current codebook (None: none received, or its file is damaged)."""
        name = self._index().get(self._key)
        if name is None:
            return None
        try:
            book = load_codebook(self.directory / name)
        except CodebookError as exc:
            logger.error("the received codebook %s cannot be used: %s", name, exc)
            return None
        return book if book.dim == self.dim else None

    def path(self, content_hash: bytes, suffix: str) -> Path:
        return self.directory / f"{content_hash.hex()}{suffix}"

    def make_current(self, book: PQCodec) -> None:
        index = self._index()
        index[self._key] = self.path(book.content_hash, ".npz").name
        self._write_index(index)

    def _write_index(self, index: dict[str, str]) -> None:
        tmp = self.directory / (CURRENT + ".tmp")
        tmp.write_text(json.dumps(index, sort_keys=True))
        os.replace(tmp, self.directory / CURRENT)

    def aside_path(self, book: PQCodec) -> Path:
        """Where :meth:`set_aside` keeps ``book``'s file."""
        return self.directory / ASIDE / self.path(book.content_hash, ".npz").name

    def set_aside(self, book: PQCodec) -> Path:
        """Stop using ``book`` (the cloud does not have it): it is no longer current, and its
        file moves to :meth:`aside_path` (kept for an operator, never deleted). Idempotent."""
        index = self._index()
        name = self.path(book.content_hash, ".npz").name
        if index.get(self._key) == name:
            del index[self._key]
            self._write_index(index)
        aside = self.aside_path(book)
        aside.parent.mkdir(parents=True, exist_ok=True)
        if (self.directory / name).exists():
            os.replace(self.directory / name, aside)
        return aside


class CodebookReceiver:
    """Answers the cloud's offers and chunks; thread-confined (called by the uplink)."""

    def __init__(
        self,
        store: CodebookStore,
        install: Callable[[PQCodec], None],
        max_code_bytes: int = 64,
    ) -> None:
        self.store = store
        self.install = install
        #: the largest code taken, in bytes (``uplink.codebook_max_bytes``)
        self.max_code_bytes = max_code_bytes
        self._offer: CodebookOffer | None = None
        self._have = 0  # bytes of the offered file received
        #: chunks that were not asked for (ignored; see :meth:`answer`)
        self.ignored = 0

    @property
    def receiving(self) -> CodebookOffer | None:
        """The offer being received (None: none)."""
        return self._offer

    @property
    def have(self) -> int:
        """Bytes of the offered file received so far."""
        return self._have

    def answer(self, message: CodebookOffer | CodebookChunk) -> CodebookAck | None:
        """The answer to an offer or a chunk from the cloud (None: nothing to say). A chunk
        that was not asked for is logged, counted in :attr:`ignored`, and answered by asking
        again from the offset this edge has."""
        try:
            if isinstance(message, CodebookOffer):
                return self.offer(message)
            return self.chunk(message)
        except CodebookTransferError as exc:
            logger.warning("codebook chunk ignored: %s", exc)
            self.ignored += 1
            offer = self._offer
            if offer is None or self._have == offer.size:
                return None
            return CodebookAck(offer.content_hash, CodebookState.WANT, self._have)

    def offer(self, offer: CodebookOffer) -> CodebookAck:
        """Take an offer: ask for what is missing, or refuse it (other encoder space)."""
        if offer.dim != self.store.dim or offer.encoder != self.store.encoder:
            why = (
                f"the codebook is for {offer.encoder} ({offer.dim}-d); this edge runs "
                f"{self.store.encoder} ({self.store.dim}-d)"
            )
            return self._refuse(offer.content_hash, why)
        if offer.size > limits.MAX_CODEBOOK_BYTES:  # the decoder bounds it; a check in depth
            return self._refuse(offer.content_hash, f"{offer.size} bytes is too large")
        try:
            code_bytes = pq_code_bytes(offer.codec_id)
        except CodecError as exc:
            return self._refuse(offer.content_hash, f"no code size in the offer: {exc}")
        if code_bytes > self.max_code_bytes:
            why = (
                f"{offer.codec_id} codes are {code_bytes} bytes, more than this edge's "
                f"uplink.codebook_max_bytes ({self.max_code_bytes})"
            )
            return self._refuse(offer.content_hash, why)
        current = self.store.current()
        if current is not None and current.content_hash == offer.content_hash:
            self.install(current)  # received before (a restart): nothing to fetch
            return CodebookAck(offer.content_hash, CodebookState.INSTALLED, offer.size)
        self.store.directory.mkdir(parents=True, exist_ok=True)
        part = self.store.path(offer.content_hash, ".part")
        have = part.stat().st_size if part.exists() else 0
        if have > offer.size:
            part.unlink()
            have = 0
        self._offer, self._have = offer, have
        logger.info(
            "codebook %s %s offered (%d bytes; %d here already)",
            offer.codec_id,
            offer.content_hash.hex()[:12],
            offer.size,
            have,
        )
        if have == offer.size:
            return self._complete(offer)
        return CodebookAck(offer.content_hash, CodebookState.WANT, have)

    def chunk(self, chunk: CodebookChunk) -> CodebookAck:
        """Append one chunk; the next WANT, or INSTALLED/REFUSED once the file is complete.

        Raises :class:`CodebookTransferError` for a chunk that was not asked for (nothing is
        written).
        """
        offer = self._offer
        if offer is None or chunk.content_hash != offer.content_hash:
            raise CodebookTransferError(
                f"chunk of codebook {chunk.content_hash.hex()[:16]}..., which is not being received"
            )
        if chunk.offset != self._have:
            raise CodebookTransferError(
                f"chunk at offset {chunk.offset}, expected {self._have} of {offer.size}"
            )
        end = chunk.offset + len(chunk.data)
        if end > offer.size:
            raise CodebookTransferError(f"chunk ends at {end}, past the offered {offer.size} bytes")
        with open(self.store.path(offer.content_hash, ".part"), "ab") as fh:
            fh.write(chunk.data)
            fh.flush()
            os.fsync(fh.fileno())
        self._have = end
        if end < offer.size:
            return CodebookAck(offer.content_hash, CodebookState.WANT, end)
        return self._complete(offer)

    def _complete(self, offer: CodebookOffer) -> CodebookAck:
        part = self.store.path(offer.content_hash, ".part")
        self._offer = None
        try:
            book = load_codebook(part)
            if book.content_hash != offer.content_hash:
                raise CodebookError(
                    str(part), f"its content hash is {book.content_hash.hex()[:16]}..."
                )
            if book.dim != self.store.dim or book.codec_id != offer.codec_id:
                raise CodebookError(str(part), f"it is {book.codec_id} of dim {book.dim}")
        except CodebookError as exc:
            part.unlink(missing_ok=True)
            return self._refuse(offer.content_hash, f"received file does not verify: {exc}")
        final = self.store.path(offer.content_hash, ".npz")
        os.replace(part, final)
        self.store.make_current(book)
        logger.info(
            "codebook %s %s received and verified: %s",
            book.codec_id,
            offer.content_hash.hex()[:12],
            final,
        )
        self.install(book)
        return CodebookAck(offer.content_hash, CodebookState.INSTALLED, offer.size)

    def _refuse(self, content_hash: bytes, why: str) -> CodebookAck:
        logger.warning("codebook %s refused: %s", content_hash.hex()[:12], why)
        return CodebookAck(content_hash, CodebookState.REFUSED, 0, why[: limits.MAX_TEXT_CHARS])
