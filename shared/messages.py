"""Every message of the semcom wire protocol, as frozen dataclasses.

A message travels inside an :class:`Envelope` that carries the header every frame has: the
sending edge, a per-edge sequence number, and the capture and send times. Timestamps are
integer microseconds since the Unix epoch (UTC).

Field order is wire order (a msgpack array): reordering, adding or removing a field is a protocol
change and needs a new ``PROTOCOL_VERSION`` and new golden fixtures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from shared import limits
from shared.errors import InvalidMessage
from shared.geometry import Box
from shared.pathwire import PathType, TrackPath
from shared.schema import (
    F32,
    Bool,
    Boxes,
    BoxType,
    Bytes,
    Enum,
    Histogram,
    NamedFloats,
    Nested,
    Numbers,
    Record,
    Seq,
    Str,
    UInt,
    WireType,
    wire,
)

#: Edge and camera ids: letters, digits, ``.``, ``_``, ``-``; safe in URLs, paths and logs.
ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_ID = Str(limits.MAX_ID_CHARS, pattern=ID_PATTERN, min_chars=1)
_NAME = Str(limits.MAX_NAME_CHARS)
_U16 = UInt(16)
_U32 = UInt(32)
#: Seqs and timestamps: u64 on the wire, bounded to what storage holds (signed 64-bit).
_SEQ = UInt(64, high=limits.MAX_SEQ)
_TS_US = UInt(64, high=limits.MAX_TS_US)
_CLASS = UInt(16, high=limits.MAX_CLASS_ID)
_CONF = F32(0.0, 1.0)
_HASH = Bytes(32, exact=32)
#: A spool's incarnation id (empty: none), see :class:`Hello`.
_SPOOL_ID = Str(limits.MAX_ID_CHARS, pattern=r"[A-Za-z0-9._-]*")
#: A health figure's name: lower-case letters, digits and ``_`` (``capture_fps``).
HEALTH_NAME_PATTERN: Final = r"[a-z][a-z0-9_]*"
_HEALTH = NamedFloats(
    limits.MAX_HEALTH_ENTRIES,
    Str(limits.MAX_HEALTH_NAME_CHARS, pattern=HEALTH_NAME_PATTERN, min_chars=1),
    F32(),
)


class MessageType(IntEnum):
    """The type byte of a frame."""

    HELLO = 1
    HELLO_ACK = 2
    DETECTIONS = 3
    EMBEDDING = 4
    TRACK_END = 5
    FRAME_COUNTS = 6
    ACK = 7
    HEARTBEAT = 8
    ERROR = 9
    TRACK_SUMMARY = 10
    CODEBOOK_OFFER = 11
    CODEBOOK_CHUNK = 12
    CODEBOOK_ACK = 13


class EmitReason(IntEnum):
    """Why the edge sent an embedding for a track."""

    FIRST_SIGHT = 1  # the track was confirmed
    DRIFT = 2  # its appearance drifted past the cosine threshold
    KEYFRAME = 3  # the keyframe interval passed
    REQUESTED = 4  # the cloud asked for it


class ErrorCode(IntEnum):
    """Machine-readable reason of an :class:`Error` message."""

    BAD_MESSAGE = 1
    VERSION_MISMATCH = 2
    UNKNOWN_CODEC = 3
    CODEC_MISMATCH = 4
    UNAUTHORIZED = 5
    OVERLOADED = 6
    INTERNAL = 7


@dataclass(frozen=True, slots=True)
class CodecRef(Record):
    """An embedding codec as announced in :class:`Hello`: its id and codebook content hash."""

    codec_id: str = wire(Str(limits.MAX_CODEC_ID_CHARS, min_chars=1))
    content_hash: bytes = wire(_HASH)


@dataclass(frozen=True, slots=True)
class CameraInfo(Record):
    """A camera served by an edge: its id and frame geometry (pixels, frames per second)."""

    camera: str = wire(_ID)
    width: int = wire(_U16)
    height: int = wire(_U16)
    fps: float = wire(F32(0.0, 1000.0))


@dataclass(frozen=True, slots=True)
class Hello(Record):
    """First message of a session, edge -> cloud: who is talking and how it encodes."""

    software_version: str = wire(_NAME)
    detector: str = wire(_NAME)
    encoder: str = wire(_NAME)
    embedding_dim: int = wire(UInt(16, low=1, high=limits.MAX_EMBEDDING_DIM))
    codecs: tuple[CodecRef, ...] = wire(Seq(Nested(CodecRef), limits.MAX_CODECS))
    cameras: tuple[CameraInfo, ...] = wire(Seq(Nested(CameraInfo), limits.MAX_CAMERAS))
    #: True when the encoder runs with random (untrained) weights: such vectors are not
    #: semantically meaningful and everything derived from them must say so.
    random_init_encoder: bool = wire(Bool())
    #: The incarnation of the edge's spool (a random id made with the spool file): it tells
    #: the cloud whether the seqs this edge sends are the ones it stored before, or a new
    #: spool's that merely reuse the same numbers.
    spool_id: str = wire(_SPOOL_ID, default="")


@dataclass(frozen=True, slots=True)
class HelloAck(Record):
    """Cloud -> edge answer to :class:`Hello`.

    ``last_seq`` is the watermark (every seq up to it is stored); ``spool_id`` the spool
    incarnation the cloud last stored frames from for this edge (empty: none yet), to which
    those seqs belong; ``next_seq`` the first seq the cloud has never stored for this edge
    (highest seq ever stored + 1). See "A reset or replaced spool" in docs/wire.md.
    """

    session_id: str = wire(_ID)
    last_seq: int = wire(_SEQ)
    max_frame_bytes: int = wire(UInt(32, low=256, high=limits.MAX_FRAME_BYTES))
    spool_id: str = wire(_SPOOL_ID, default="")
    next_seq: int = wire(_SEQ, default=1)


@dataclass(frozen=True, slots=True)
class Detections(Record):
    """Every kept box of one frame: parallel arrays, one entry per box."""

    camera: str = wire(_ID)
    boxes: tuple[Box, ...] = wire(Boxes(limits.MAX_DETECTIONS))
    class_ids: tuple[int, ...] = wire(Numbers("H", limits.MAX_DETECTIONS, high=limits.MAX_CLASS_ID))
    confidences: tuple[float, ...] = wire(Numbers("f", limits.MAX_DETECTIONS, low=0.0, high=1.0))
    #: Tracker ids; 0 means the box is not (yet) tracked.
    track_ids: tuple[int, ...] = wire(Numbers("I", limits.MAX_DETECTIONS))

    def _validate(self) -> None:
        n = len(self.boxes)
        for name in ("class_ids", "confidences", "track_ids"):
            if len(getattr(self, name)) != n:
                raise InvalidMessage(
                    f"Detections.{name}", f"has {len(getattr(self, name))} items for {n} boxes"
                )


@dataclass(frozen=True, slots=True)
class Embedding(Record):
    """One RoI embedding of a tracked object, with the detection it was cropped from.

    ``codec`` is the codec's 32-bit fingerprint (see :mod:`shared.vectors`); ``code`` its bytes.
    """

    camera: str = wire(_ID)
    track_id: int = wire(_U32)
    reason: EmitReason = wire(Enum(EmitReason))
    class_id: int = wire(_CLASS)
    confidence: float = wire(_CONF)
    box: Box = wire(BoxType())
    codec: int = wire(_U32)
    code: bytes = wire(Bytes(limits.MAX_CODE_BYTES))

    def _validate(self) -> None:
        if not self.code:
            raise InvalidMessage("Embedding.code", "must not be empty")


@dataclass(frozen=True, slots=True)
class TrackEnd(Record):
    """Summary of a track that ended: times (us), class votes and a sampled box path."""

    camera: str = wire(_ID)
    track_id: int = wire(_U32)
    first_seen_us: int = wire(_TS_US)
    last_seen_us: int = wire(_TS_US)
    frames: int = wire(_U32)
    class_votes: dict[int, int] = wire(
        Histogram(limits.MAX_CLASS_ENTRIES, max_key=limits.MAX_CLASS_ID, max_value=limits.MAX_COUNT)
    )
    path: tuple[Box, ...] = wire(Boxes(limits.MAX_PATH_POINTS))

    def _validate(self) -> None:
        if self.last_seen_us < self.first_seen_us:
            raise InvalidMessage("TrackEnd.last_seen_us", "is before first_seen_us")

    @property
    def duration_s(self) -> float:
        return (self.last_seen_us - self.first_seen_us) / 1e6


@dataclass(frozen=True, slots=True)
class FrameCounts(Record):
    """Objects per class in one frame: a few bytes instead of a frame."""

    camera: str = wire(_ID)
    counts: dict[int, int] = wire(
        Histogram(limits.MAX_CLASS_ENTRIES, max_key=limits.MAX_CLASS_ID, max_value=limits.MAX_COUNT)
    )


@dataclass(frozen=True, slots=True)
class Ack(Record):
    """Cloud -> edge: messages durably stored.

    ``ranges`` lists inclusive seq ranges as flat pairs ``(first, last, first, last, ...)``: the
    edge may forget exactly those. Selective ranges are needed because the edge drains its spool
    by priority after an outage, not in seq order. ``seq`` is the cumulative watermark: every
    seq up to it is stored (informational: seqs the edge had to drop never arrive).
    """

    seq: int = wire(_SEQ)
    ranges: tuple[int, ...] = wire(Numbers("Q", 2 * limits.MAX_ACK_RANGES, high=limits.MAX_SEQ))

    def _validate(self) -> None:
        if len(self.ranges) % 2:
            raise InvalidMessage("Ack.ranges", "must hold (first, last) pairs")
        for i in range(0, len(self.ranges), 2):
            if self.ranges[i] > self.ranges[i + 1]:
                raise InvalidMessage(f"Ack.ranges[{i}]", "first seq is after last seq")

    def seqs(self) -> list[int]:
        """Every seq the ranges cover."""
        return [
            s
            for i in range(0, len(self.ranges), 2)
            for s in range(self.ranges[i], self.ranges[i + 1] + 1)
        ]

    @classmethod
    def covering(cls, seqs: Iterable[int], watermark: int = 0) -> Ack:
        """The Ack for a set of stored seqs, coalesced into ranges."""
        flat: list[int] = []
        for s in sorted(set(seqs)):
            if flat and s == flat[-1] + 1:
                flat[-1] = s
            else:
                flat += [s, s]
        return cls(watermark, tuple(flat))


@dataclass(frozen=True, slots=True)
class Heartbeat(Record):
    """Liveness in both directions, with the sender's backlog (messages) and rate (bit/s).

    Since version 3 the edge also reports its link health, for the cloud's per-edge view:
    ``reconnects`` (uplink sessions opened after the first since the edge process started),
    ``rung`` (codec id of the ladder rung its embeddings use now; empty: unknown or no
    ladder), ``spool_bytes`` (bytes of frames its spool holds for the cloud) and ``health``
    (a summary of the edge's own figures, name -> float32: ``capture_fps``, ``dropped``,
    ``ack_ms_p95``, ...; see docs/wire.md; at most 16). The cloud's own heartbeats leave them
    0 and empty.
    """

    backlog: int = wire(_U32)
    rate_bps: float = wire(F32(0.0, 1.0e12))
    reconnects: int = wire(_U32, default=0)
    rung: str = wire(Str(limits.MAX_CODEC_ID_CHARS), default="")
    #: u64 bounded like seqs (signed 64-bit), so that any value that decodes can be stored.
    spool_bytes: int = wire(UInt(64, high=limits.MAX_SEQ), default=0)
    health: dict[str, float] = wire(_HEALTH, default_factory=dict)


@dataclass(frozen=True, slots=True)
class Error(Record):
    """A typed error report; ``fatal`` means the sender is closing the session."""

    code: ErrorCode = wire(Enum(ErrorCode))
    message: str = wire(Str(limits.MAX_TEXT_CHARS))
    ref_seq: int = wire(_SEQ)
    fatal: bool = wire(Bool())


class CodebookState(IntEnum):
    """What an edge says about an offered codebook (:class:`CodebookAck`)."""

    WANT = 1  # send the file from ``offset`` on (resumable: the edge keeps what it has)
    INSTALLED = 2  # verified, saved, and used for the next embeddings
    REFUSED = 3  # not taken (see ``reason``); the cloud does not offer it again this session


@dataclass(frozen=True, slots=True)
class CodebookOffer(Record):
    """Cloud -> edge, seq 0: a codebook fitted for the edge's encoder space is available.

    ``content_hash`` is the codec's content hash (:attr:`shared.pq.PQCodec.content_hash`), which
    the edge checks on the loaded file; ``size`` the bytes of its ``.npz`` file.
    """

    codec_id: str = wire(Str(limits.MAX_CODEC_ID_CHARS, min_chars=1))
    content_hash: bytes = wire(_HASH)
    size: int = wire(UInt(32, low=1, high=limits.MAX_CODEBOOK_BYTES))
    encoder: str = wire(_NAME)
    dim: int = wire(UInt(16, low=1, high=limits.MAX_EMBEDDING_DIM))


@dataclass(frozen=True, slots=True)
class CodebookChunk(Record):
    """Cloud -> edge, seq 0: the bytes ``[offset, offset + len(data))`` of an offered file."""

    content_hash: bytes = wire(_HASH)
    #: where the data goes in the file; the edge takes only the offset it asked for, and never
    #: bytes past the size it was offered
    offset: int = wire(UInt(32, high=limits.MAX_CODEBOOK_BYTES - 1))
    data: bytes = wire(Bytes(limits.MAX_CODEBOOK_CHUNK_BYTES))

    def _validate(self) -> None:
        if not self.data:
            raise InvalidMessage("CodebookChunk.data", "must not be empty")


@dataclass(frozen=True, slots=True)
class CodebookAck(Record):
    """Edge -> cloud, seq 0: ask for the file from ``offset`` on, or say it is installed or
    refused (``reason``: why). Never stored."""

    content_hash: bytes = wire(_HASH)
    state: CodebookState = wire(Enum(CodebookState))
    offset: int = wire(UInt(32, high=limits.MAX_CODEBOOK_BYTES))
    reason: str = wire(Str(limits.MAX_TEXT_CHARS), default="")


@dataclass(frozen=True, slots=True)
class TrackSummary(Record):
    """A track summarised at its end (``final``) or on a keyframe of a long track.

    Times in microseconds; ``frames`` and ``class_votes`` count the whole track so far (a
    later summary supersedes an earlier one's). ``path`` holds the box path since the last
    summary, simplified to the edge's pixel tolerance (:func:`shared.paths.simplify`), each
    point ``offset_ms`` after ``first_seen_us`` (:mod:`shared.pathwire`); the first summary's
    path starts at the first sighting, a later one's after the previous summary's last point.
    Since version 4; replaces :class:`TrackEnd` in the edge's default policy.
    """

    camera: str = wire(_ID)
    track_id: int = wire(_U32)
    first_seen_us: int = wire(_TS_US)
    last_seen_us: int = wire(_TS_US)
    frames: int = wire(_U32)
    class_votes: dict[int, int] = wire(
        Histogram(limits.MAX_CLASS_ENTRIES, max_key=limits.MAX_CLASS_ID, max_value=limits.MAX_COUNT)
    )
    final: bool = wire(Bool())
    path: TrackPath = wire(PathType())

    def _validate(self) -> None:
        if self.last_seen_us < self.first_seen_us:
            raise InvalidMessage("TrackSummary.last_seen_us", "is before first_seen_us")
        span_ms = -(-(self.last_seen_us - self.first_seen_us) // 1000)
        if self.path.points and self.path.points[-1].offset_ms > span_ms:
            raise InvalidMessage(
                "TrackSummary.path",
                f"last point at {self.path.points[-1].offset_ms} ms is after last_seen_us "
                f"({span_ms} ms)",
            )

    def point_times_us(self) -> list[int]:
        """Each path point's capture time (us), capped at ``last_seen_us``."""
        return [
            min(self.first_seen_us + p.offset_ms * 1000, self.last_seen_us)
            for p in self.path.points
        ]


Message = (
    Hello
    | HelloAck
    | Detections
    | Embedding
    | TrackEnd
    | FrameCounts
    | Ack
    | Heartbeat
    | Error
    | TrackSummary
    | CodebookOffer
    | CodebookChunk
    | CodebookAck
)

MESSAGE_TYPES: Final[dict[MessageType, type[Message]]] = {
    MessageType.HELLO: Hello,
    MessageType.HELLO_ACK: HelloAck,
    MessageType.DETECTIONS: Detections,
    MessageType.EMBEDDING: Embedding,
    MessageType.TRACK_END: TrackEnd,
    MessageType.FRAME_COUNTS: FrameCounts,
    MessageType.ACK: Ack,
    MessageType.HEARTBEAT: Heartbeat,
    MessageType.ERROR: Error,
    MessageType.TRACK_SUMMARY: TrackSummary,
    MessageType.CODEBOOK_OFFER: CodebookOffer,
    MessageType.CODEBOOK_CHUNK: CodebookChunk,
    MessageType.CODEBOOK_ACK: CodebookAck,
}
TYPE_OF: Final[dict[type[Message], MessageType]] = {v: k for k, v in MESSAGE_TYPES.items()}

#: Largest send-minus-capture delta the header carries, in microseconds (about 292 years).
MAX_TS_DELTA_US: Final = 2**63 - 1


class _MessageField(WireType[Message]):
    def check(self, value: Any, path: str) -> Message:
        if type(value) not in TYPE_OF:
            raise InvalidMessage(path, f"{type(value).__name__} is not a message type")
        return value  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Envelope(Record):
    """The header every frame carries, around one message.

    ``seq`` numbers an edge's messages (1, 2, 3, ...; 0 for control messages that are not
    acknowledged); the cloud ignores repeats of (edge_id, seq).
    """

    edge_id: str = wire(_ID)
    seq: int = wire(_SEQ)
    capture_ts_us: int = wire(_TS_US)
    send_ts_us: int = wire(_TS_US)
    message: Message = wire(_MessageField())

    @property
    def type(self) -> MessageType:
        return TYPE_OF[type(self.message)]
