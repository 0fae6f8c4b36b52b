"""When the cloud does not have the codebook the edge kept: back to the universal rung.

An edge keeps the codebook a cloud pushed (:mod:`edge.codebooks`) and announces it in every
Hello after a restart. A cloud that never stored it (its database was reset, or the edge now
talks to another cloud) refuses that Hello with a fatal ``UNKNOWN_CODEC`` Error whose text
names the codebook's content hash (``unknown embedding codec 'pq8x8' (hash 0123abcd...)``).
Rather than stop, the edge (:class:`CodebookFallback`, called by the uplink):

1. switches the pipeline back to the codec it was built with (int8, or the ladder): new
   embeddings go on a universal rung, which every cloud decodes;
2. announces the live Hello again without the codebook;
3. for the frames spooled under a Hello naming the codebook: the embeddings coded with it go
   to the spool's quarantine with a reason that says where the codebook file is and what to
   do (give it to the cloud, ``semcom cloud serve --codebook PATH``, then ``semcom edge spool
   quarantine retry``); every other frame of those Hellos (detections, summaries, embeddings
   on other rungs) is filed under the same Hello without the codebook, and sent;
4. moves the codebook file aside (``<codebook dir>/set-aside/<hash>.npz``, never deleted) so
   that a restart does not announce it again; heartbeats, ``/healthz`` and ``/metrics`` say
   so (``UplinkStats.codebook_set_aside``).

Each step is idempotent, so a crash between two is repaired by the next refusal after the
restart. An embedding the pipeline encoded with the codebook just before step 1 and spooled
after step 3 is refused by the cloud by its seq (``UNKNOWN_CODEC``, not announced in Hello) and
quarantined by the uplink's usual rule: never lost silently.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from edge.codebooks import CodebookStore
from edge.pipeline import EdgePipeline, Outbox
from edge.sink import SpoolSink
from edge.spool import Spool
from edge.uplink import Uplink
from shared.codec import decode, peek_type
from shared.errors import ProtocolError
from shared.messages import Embedding, Error, ErrorCode, Hello, MessageType
from shared.pq import PQCodec
from shared.vectors import fingerprint

logger = logging.getLogger(__name__)


def names_codebook(error: Error, book: PQCodec) -> bool:
    """Whether ``error`` is the cloud refusing a Hello because it lacks ``book``."""
    return error.code is ErrorCode.UNKNOWN_CODEC and book.content_hash.hex()[:16] in error.message


def without(hello: Hello, book: PQCodec) -> Hello:
    """``hello`` without ``book`` among its codecs."""
    codecs = tuple(r for r in hello.codecs if r.content_hash != book.content_hash)
    return dataclasses.replace(hello, codecs=codecs)


def refile(spool: Spool, book: PQCodec, reason: str) -> tuple[int, int]:
    """Frames spooled under a Hello naming ``book``: its embeddings to the quarantine with
    ``reason``, the others under the same Hello without it. Returns (quarantined, refiled)."""
    fp = fingerprint(book)
    quarantined = refiled = 0
    for group in spool.groups():
        if group.hello is None:
            continue
        try:
            hello = spool.hello(group.hello)
        except (ProtocolError, KeyError):
            continue  # the uplink's groups quarantine a damaged Hello's frames
        if all(r.content_hash != book.content_hash for r in hello.codecs):
            continue
        coded = [
            seq for seq, frame in spool.peek(1 << 62, hellos=(group.hello,)) if _uses(frame, fp)
        ]
        quarantined += spool.quarantine(reason, coded)
        new = spool.hello_id(without(hello, book))
        with spool.transaction() as db:
            cursor = db.execute("UPDATE frames SET hello = ? WHERE hello = ?", (new, group.hello))
            refiled += int(cursor.rowcount)
    return quarantined, refiled


def _uses(frame: bytes, fp: int) -> bool:
    try:
        if peek_type(frame) is not MessageType.EMBEDDING:
            return False
        message = decode(frame).message
    except ProtocolError:
        return False  # not this module's to judge: the cloud refuses it by seq
    return isinstance(message, Embedding) and message.codec == fp


class CodebookFallback:
    """The uplink's ``on_codebook_refused``: the steps above, for the codebook in use."""

    def __init__(
        self,
        store: CodebookStore,
        pipeline: EdgePipeline,
        outbox: Outbox,
        sink: SpoolSink,
        link: Uplink,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.outbox = outbox
        self.sink = sink
        self.link = link

    def __call__(self, error: Error) -> int | None:
        """Handle a fatal Hello refusal; returns the embeddings quarantined, or None when the
        refusal is not about the codebook in use (the uplink stops as before)."""
        book = self.pipeline.codec
        if not (self.pipeline.pinned and isinstance(book, PQCodec)):
            return None
        if not names_codebook(error, book):
            return None
        self.pipeline.drop(book)
        hello = self.sink.hello
        if isinstance(hello, Hello):
            self.outbox.put(time.time_ns() // 1_000, without(hello, book), control=True)
        aside = self.store.aside_path(book)
        what = f"{book.codec_id} {book.content_hash.hex()[:12]}"
        reason = (
            f"UNKNOWN_CODEC: the cloud does not have codebook {what} (its database was reset, "
            f"or another cloud pushed it); the file is kept at {aside}: give it to the cloud "
            "(semcom cloud serve --codebook FILE) and retry these messages "
            f"(semcom edge spool quarantine retry); the cloud said: {error.message}"
        )
        quarantined, refiled = refile(self.sink.spool, book, reason)
        self.store.set_aside(book)
        self.link.codebook = ""
        self.link.stats.codebook = ""
        self.link.stats.codebook_set_aside = what
        logger.error(
            "the cloud does not have the codebook %s this edge kept: embeddings go back to %s; "
            "%d spooled embeddings coded with it quarantined, %d other messages sent without "
            "it; the file is set aside at %s",
            what,
            self.pipeline.codec.codec_id,
            quarantined,
            refiled,
            aside,
        )
        return quarantined
