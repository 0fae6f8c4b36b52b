"""Hard limits of the wire contract.

Every length and count a peer can send is bounded here, so that decoding hostile input needs
bounded time and memory. Changing a limit is a protocol change: bump ``PROTOCOL_VERSION``.
"""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 4  # 4: bundle frames (type 32), TrackSummary, codebook push
SUPPORTED_VERSIONS: Final = (4,)
#: Earlier versions whose data messages (Detections, Embedding, TrackEnd, FrameCounts) are laid
#: out as this version's: a spooled frame of one is sent again re-stamped (``codec.restamp``).
SAME_DATA_LAYOUT: Final = (2, 3)
#: Versions whose bundle frames (``shared.bundle``) this build reads (bundles came with 4).
BUNDLE_VERSIONS: Final = (4,)

#: Largest encoded frame, in bytes. aiortc's SCTP data channel caps one message at 64 KiB.
MAX_FRAME_BYTES: Final = 65_536
#: Largest body after decompression, in bytes (a zstd frame may expand up to this).
MAX_BODY_BYTES: Final = 262_144
#: zstd window the decoder accepts, in bytes (bounds decompression memory).
MAX_ZSTD_WINDOW_BYTES: Final = 1 << 20

MAX_ID_CHARS: Final = 64  # edge ids, camera ids, session ids
MAX_NAME_CHARS: Final = 256  # model names, software versions
MAX_TEXT_CHARS: Final = 1_024  # error messages
MAX_CODEC_ID_CHARS: Final = 32

MAX_DETECTIONS: Final = 512  # boxes in one Detections message
MAX_EMBEDDING_DIM: Final = 4_096
MAX_CODE_BYTES: Final = 4 * MAX_EMBEDDING_DIM  # a float32 vector of the largest dim
MAX_CODECS: Final = 16  # codecs announced in one Hello
MAX_CAMERAS: Final = 64  # cameras announced in one Hello
MAX_PATH_POINTS: Final = 256  # sampled boxes in a TrackEnd path, points in a TrackSummary's
#: Coarsest grid of a TrackSummary path, in units of 1/65535 of the frame (4096: 1/16).
MAX_PATH_GRID: Final = 4_096
#: Largest time offset of a TrackSummary path point from the track's first sighting, in ms
#: (about 49 days).
MAX_PATH_OFFSET_MS: Final = 2**32 - 1
#: Largest coded TrackSummary path, in bytes: grid and count varints, then per point a
#: 5-byte time varint and four 3-byte zigzag varints (a box coordinate moves < 2**17 cells).
MAX_PATH_BYTES: Final = 3 + 2 + MAX_PATH_POINTS * (5 + 4 * 3)
MAX_CLASS_ENTRIES: Final = 256  # entries in a class histogram
MAX_CLASS_ID: Final = 65_535
MAX_COUNT: Final = 2**32 - 1
MAX_ACK_RANGES: Final = 1_024  # (first, last) seq ranges in one Ack
MAX_BUNDLE_MESSAGES: Final = 4_096  # messages in one bundle frame
MAX_HEALTH_ENTRIES: Final = 16  # named figures in a Heartbeat's health summary
MAX_HEALTH_NAME_CHARS: Final = 32  # a health figure's name, [a-z][a-z0-9_]*
#: Largest codebook file an edge is offered (``CodebookOffer.size``), in bytes: a 4096-d
#: input projected to 1024 dims needs 16 MiB of float32 and its centroids; real ones are
#: ~0.1-1 MiB.
MAX_CODEBOOK_BYTES: Final = 1 << 25
#: Bytes of a codebook file in one ``CodebookChunk`` (under the msgpack bin cap, so a chunk's
#: frame stays far below ``MAX_FRAME_BYTES`` even uncompressed).
MAX_CODEBOOK_CHUNK_BYTES: Final = 16_000
#: Largest seq (``Envelope.seq``, ``HelloAck.last_seq``, ``Ack`` ranges, ``Error.ref_seq``) and
#: largest timestamp in microseconds (capture/send times, ``TrackEnd`` times): msgpack carries
#: u64, but storage (SQLite INTEGER, PostgreSQL BIGINT) holds signed 64-bit integers, so a
#: frame that decodes can always be stored. 2**63 - 1 us is about 292,000 years.
MAX_SEQ: Final = 2**63 - 1
MAX_TS_US: Final = 2**63 - 1

#: Per-object caps handed to the msgpack unpacker (bytes for str/bin, items for containers).
MSGPACK_MAX_STR_BYTES: Final = 4 * MAX_TEXT_CHARS
MSGPACK_MAX_BIN_BYTES: Final = MAX_CODE_BYTES
MSGPACK_MAX_ARRAY_ITEMS: Final = 256
MSGPACK_MAX_MAP_ITEMS: Final = MAX_CLASS_ENTRIES
