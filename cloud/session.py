"""One edge's session on the cloud side, without I/O: bytes in, reply frames out.

The transport (aiortc data channel, or the WebSocket fallback) authenticates the edge, then
hands every received message to :meth:`EdgeSession.receive` and sends back what it returns.
Rules:

- the first message must be ``Hello``; its codecs are checked (``CodecSet.accept``) and the
  answer is ``HelloAck`` (the stored watermark, the spool incarnation it belongs to and the
  next seq never stored) or a fatal ``Error`` naming the problem; a frame of another protocol
  version gets a fatal ``VERSION_MISMATCH``; a Hello the database cannot register now (busy,
  down) gets a non-fatal ``INTERNAL`` Error without a seq and ends the session (the edge
  reconnects; none of its frames is refused);
- a frame that does not decode, claims another edge id, or names a codec the edge did not
  announce gets a typed ``Error`` and is not acknowledged; the other frames of the same batch
  are still stored;
- a bundle frame (protocol 4, :mod:`shared.bundle`) is unpacked into its messages, and each
  is checked, stored, acknowledged or refused by its own seq as if it came alone (a refused
  one gets an ``Error`` with its seq, the others are stored);
- heartbeats are answered with a heartbeat (the edge's liveness check); what they report
  (backlog, and since protocol v3 reconnects, rung and spool bytes) is kept on the session and
  given to the :class:`~cloud.linkmon.LinkMonitor`, with every data frame accepted for storing
  (its bytes, capture time and, for an embedding, its codec id);
- data frames are stored (journal and catalog rows, one transaction), then acknowledged with
  the exact seq ranges stored (new and repeats), so the edge may forget them; a frame that
  cannot be stored gets a non-fatal ``INTERNAL`` Error with its seq, the others are acked;
- seq 0 is for control messages: a data message with seq 0 gets a ``BAD_MESSAGE`` Error;
- codebooks (since protocol v4): after the Hello, and on heartbeats, the newest codebook the
  cloud fitted for the edge's encoder space is offered when the Hello does not announce it;
  the edge's ``CodebookAck`` messages are answered with chunks (:mod:`cloud.codebook_push`).
  A Hello naming a codebook the cloud stored (fitted on another replica) is accepted.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from cloud.codebook_push import CodebookPush, PushError
from cloud.codebooks import CodebookLibrary
from cloud.journal import Frame
from cloud.linkmon import LinkMonitor
from cloud.project import Received, Space
from cloud.store import Store, WriteRequest, WriteResult
from shared import limits
from shared.bundle import decode_bundle, is_bundle
from shared.codec import decode, encode
from shared.errors import CodebookError, CodecError, CodecMismatch, DecodeError, VersionMismatch
from shared.framing import BATCH_MAGIC, unpack_batch
from shared.messages import (
    Ack,
    CodebookAck,
    Detections,
    Embedding,
    Envelope,
    Error,
    ErrorCode,
    FrameCounts,
    Heartbeat,
    Hello,
    HelloAck,
    Message,
    TrackEnd,
    TrackSummary,
)
from shared.vectors import CodecSet

logger = logging.getLogger(__name__)

CLOUD_ID = "cloud"
#: Protocol versions whose Error message is laid out as ours (version byte aside).
_SAME_ERROR_LAYOUT = (1, 2, 3)
#: Messages that are stored and acknowledged by (edge, seq), so they need a seq >= 1.
_DATA = (Detections, Embedding, TrackEnd, FrameCounts, TrackSummary)


@dataclass
class SessionStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class EdgeSession:
    def __init__(
        self,
        edge_id: str,
        session_id: str,
        store: Store,
        link: LinkMonitor | None = None,
        codebooks: CodebookLibrary | None = None,
        offer_codebooks: bool = True,
    ) -> None:
        """``codebooks``: where fitted codebooks are found (Hellos naming one another replica
        fitted) and, with ``offer_codebooks``, offered to the edge (:mod:`cloud.codebook_push`).
        """
        self.edge_id = edge_id
        self.codebooks = codebooks
        self.push = (
            CodebookPush(codebooks, edge_id) if codebooks is not None and offer_codebooks else None
        )
        self.session_id = session_id
        self.store = store
        self.codecs: CodecSet = store.codecs
        self.hello: Hello | None = None
        self.space: Space | None = None
        self.closed = False
        self.edge_backlog = 0  # messages waiting on the edge, from its heartbeats
        self.last_heartbeat: Heartbeat | None = None  # the edge's last, with its link health
        #: Where link health goes (a monitor of its own when none is shared: tests, tools).
        self.link = link if link is not None else LinkMonitor()
        self.stats = SessionStats()

    def _reply(self, message: Message) -> bytes:
        now = time.time_ns() // 1_000
        return encode(Envelope(CLOUD_ID, 0, now, now, message))

    def _error(self, code: ErrorCode, text: str, ref_seq: int = 0, fatal: bool = False) -> bytes:
        self.stats.rejected[code.name] += 1
        logger.warning("edge %s: %s (seq %d)", self.edge_id, text, ref_seq)
        if fatal:
            self.closed = True
        return self._reply(Error(code, text[: limits.MAX_TEXT_CHARS], ref_seq, fatal))

    def _version_error(self, exc: VersionMismatch) -> bytes:
        """A fatal VERSION_MISMATCH, written in the peer's version when its Error layout is
        ours, so that an older edge can read why it was refused."""
        text = f"{exc}: upgrade the edge (this cloud speaks {limits.PROTOCOL_VERSION})"
        reply = self._error(ErrorCode.VERSION_MISMATCH, text, fatal=True)
        if exc.got in _SAME_ERROR_LAYOUT:
            reply = reply[:2] + bytes([exc.got]) + reply[3:]
        return reply

    def refuse(self, code: ErrorCode, text: str) -> bytes:
        """A non-fatal Error that still ends this session (the edge reconnects and resends)."""
        reply = self._error(code, text)
        self.closed = True
        return reply

    def receive(self, data: bytes) -> list[bytes]:
        """Handle one data-channel message (a frame or a batch); returns the frames to send.

        The synchronous path (one transaction per message); the live service instead hands
        :meth:`parse`'s request to the group-committing writer, then calls :meth:`finish`.
        """
        replies, request = self.parse(data)
        if request is not None:
            result, _vectors = self.store.write_alone(request)
            replies += self.finish(request, result)
        return replies

    def finish(self, request: WriteRequest, result: WriteResult) -> list[bytes]:
        """The Ack for a committed request (new frames and repeats alike), and a non-fatal
        ``INTERNAL`` Error naming each frame that could not be stored (refused, not acked)."""
        self.stats.stored += len(result.stored)
        self.stats.duplicates += len(result.duplicates)
        replies = [
            self._error(ErrorCode.INTERNAL, f"frame {seq} cannot be stored, refused: {why}", seq)
            for seq, why in sorted(result.refused.items())
        ]
        acked = [f.seq for f in request.frames if f.seq not in result.refused]
        if acked:
            replies.append(self._reply(Ack.covering(acked, result.watermark)))
        return replies

    def parse(self, data: bytes) -> tuple[list[bytes], WriteRequest | None]:
        """Decode and check one message; returns the replies so far and what to store."""
        if self.closed:
            return [], None
        replies: list[bytes] = []
        try:
            raw = unpack_batch(data) if data.startswith(BATCH_MAGIC) else [data]
        except DecodeError as exc:
            return [self._error(ErrorCode.BAD_MESSAGE, f"bad batch: {exc}")], None
        arrived: list[tuple[int, int, str | None]] = []  # for the link monitor, in one go
        try:
            return self._frames(raw, replies, arrived)
        finally:
            self.link.data_many(self.edge_id, arrived)

    def _frames(
        self, raw: list[bytes], replies: list[bytes], arrived: list[tuple[int, int, str | None]]
    ) -> tuple[list[bytes], WriteRequest | None]:
        """:meth:`parse`'s loop over the frames of one message; the data frames accepted for
        storing are listed in ``arrived`` (bytes, capture time, codec id) for the link
        monitor, which takes them in one call (a lock taken per frame made the threads that
        parse several edges' messages queue on it)."""
        request: WriteRequest | None = None
        unpacked = self._unpack(raw, replies)
        if unpacked is None:
            return replies, None  # fatal VERSION_MISMATCH: the session is closed
        for env, frame, size in unpacked:
            if env.edge_id != self.edge_id:
                replies.append(
                    self._error(
                        ErrorCode.BAD_MESSAGE,
                        f"frame from edge {env.edge_id!r} in the session of {self.edge_id!r}",
                        env.seq,
                    )
                )
                continue
            if isinstance(env.message, Hello):
                reply, accepted = self._hello(env.message)
                replies.append(reply)
                if not accepted:
                    return replies, None  # fatal: the session is closed
                if self.push is not None and self.space is not None:
                    offers = self.push.start(env.message, self.space.name)
                    replies += [self._reply(m) for m in offers]
                continue
            if self.space is None:
                replies.append(self._error(ErrorCode.BAD_MESSAGE, "Hello must come first", env.seq))
                continue
            if isinstance(env.message, Heartbeat):
                self.edge_backlog = env.message.backlog
                self.last_heartbeat = env.message
                self.link.data_many(self.edge_id, arrived)  # in order: the data before it
                arrived.clear()
                self.link.heartbeat(self.edge_id, env.message)
                replies.append(self._reply(Heartbeat(0, 0.0, 0, "", 0)))  # liveness for the edge
                if self.push is not None:  # a codebook fitted since the Hello
                    replies += [self._reply(m) for m in self.push.poll()]
                continue
            if isinstance(env.message, CodebookAck):  # control (seq 0): answered, not stored
                replies += self._codebook_ack(env.message)
                continue
            if env.seq == 0:
                if isinstance(env.message, _DATA):  # stored and acked by seq: needs one
                    replies.append(
                        self._error(
                            ErrorCode.BAD_MESSAGE,
                            f"{type(env.message).__name__} with seq 0: seq 0 is for control "
                            "messages (Hello, Heartbeat); data messages need seq >= 1",
                        )
                    )
                continue  # other control traffic is not stored
            codec_id = None
            if isinstance(env.message, Embedding):
                problem = self._check_code(env.message)
                if problem is not None:
                    replies.append(self._error(problem[0], problem[1], env.seq))
                    continue
                codec_id = self.codecs.resolve(env.message.codec).codec_id
            arrived.append((size, env.capture_ts_us, codec_id))
            if request is None:
                spool_id = self.hello.spool_id if self.hello is not None else ""
                request = WriteRequest(self.edge_id, self.space, spool_id=spool_id)
            request.frames.append(Frame(env.seq, int(env.type), env.capture_ts_us, frame))
            request.messages[env.seq] = Received(env.seq, env.capture_ts_us, env.message)
        return replies, request

    def _unpack(
        self, raw: list[bytes], replies: list[bytes]
    ) -> list[tuple[Envelope, bytes, int]] | None:
        """Every message of the received frames, each with the frame the journal keeps and its
        share of the bytes received; a frame that does not decode gets a ``BAD_MESSAGE`` Error
        (the others go on); None after a fatal ``VERSION_MISMATCH`` (added to ``replies``).

        A bundle's messages are stored, acknowledged and refused one by one, by their own
        seqs, exactly as if each had come in a frame of its own: the journal keeps each as a
        single frame (re-encoded), and each counts an even share of the bundle's bytes."""
        out: list[tuple[Envelope, bytes, int]] = []
        for frame in raw:
            try:
                if is_bundle(frame):
                    envelopes = decode_bundle(frame)
                    self.stats.received += len(envelopes)
                    share, extra = divmod(len(frame), len(envelopes))
                    out += [
                        (env, encode(env), share + (1 if i < extra else 0))
                        for i, env in enumerate(envelopes)
                    ]
                else:
                    self.stats.received += 1
                    out.append((decode(frame), frame, len(frame)))
            except VersionMismatch as exc:
                replies.append(self._version_error(exc))
                return None
            except DecodeError as exc:
                if is_bundle(frame):  # a single frame was counted before decoding
                    self.stats.received += 1
                replies.append(self._error(ErrorCode.BAD_MESSAGE, f"undecodable frame: {exc}"))
        return out

    def _codebook_ack(self, ack: CodebookAck) -> list[bytes]:
        if self.push is None:
            return [self._error(ErrorCode.BAD_MESSAGE, "CodebookAck: no codebook was offered")]
        try:
            return [self._reply(m) for m in self.push.on_ack(ack)]
        except PushError as exc:
            return [self._error(ErrorCode.BAD_MESSAGE, str(exc))]

    def _check_code(self, msg: Embedding) -> tuple[ErrorCode, str] | None:
        if msg.codec not in self.codecs:
            return (
                ErrorCode.UNKNOWN_CODEC,
                f"embedding names codec {msg.codec:#010x}, not announced in Hello",
            )
        codec = self.codecs.resolve(msg.codec)
        if len(msg.code) != codec.code_bytes:
            return (
                ErrorCode.BAD_MESSAGE,
                f"embedding code has {len(msg.code)} bytes, {codec.codec_id} codes have "
                f"{codec.code_bytes}",
            )
        return None

    def _hello(self, hello: Hello) -> tuple[bytes, bool]:
        if self.codebooks is not None:  # a codebook fitted on another replica, or since start
            for ref in hello.codecs:
                if int.from_bytes(ref.content_hash[:4], "little") not in self.codecs:
                    try:
                        self.codebooks.by_hash(ref.content_hash)
                    except (CodebookError, SQLAlchemyError) as exc:  # the codec stays unknown
                        logger.warning("codebook %s: %s", ref.content_hash.hex()[:12], exc)
        try:
            accepted = [
                self.codecs.accept(ref.codec_id, ref.content_hash, hello.embedding_dim)
                for ref in hello.codecs
            ]
        except CodecMismatch as exc:
            return self._error(ErrorCode.CODEC_MISMATCH, str(exc), fatal=True), False
        except CodecError as exc:  # the text names the codec's hash: an edge matches on it
            text = f"{exc}: not stored on this cloud (a codebook from another cloud or database?)"
            return self._error(ErrorCode.UNKNOWN_CODEC, text, fatal=True), False
        try:
            space = self.store.register(self.edge_id, hello, accepted)
            # The journal's record, as stored: the spool incarnation changes only when a frame
            # of the new one is stored (docs/wire.md, "A reset or replaced spool").
            state = self.store.journal_state(self.edge_id)
        except Exception as exc:  # the database is busy or down: no session, no frame refused
            logger.error("edge %s: registering its Hello failed: %s", self.edge_id, exc)
            return self.refuse(
                ErrorCode.INTERNAL, "the cloud cannot register the edge now; reconnect later"
            ), False
        self.hello, self.space = hello, space
        if hello.random_init_encoder:
            logger.warning(
                "edge %s runs a RANDOM-INIT encoder: its embeddings carry no meaning", self.edge_id
            )
        ack = HelloAck(
            self.session_id,
            state.watermark,
            limits.MAX_FRAME_BYTES,
            state.spool_id,
            state.next_seq,
        )
        return self._reply(ack), True
