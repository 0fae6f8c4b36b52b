"""The error tree of the wire contract.

Callers catch only these; every one carries the fields that say exactly what went wrong::

    ProtocolError
    ├── DecodeError              bytes that are not a valid frame (reason, field)
    │   ├── FrameTooLarge        frame or body over its hard limit (size, limit)
    │   └── VersionMismatch      a protocol version this build does not speak (got, supported)
    ├── EncodeError              a message that cannot be put on the wire (e.g. too large)
    ├── InvalidMessage           a message built with a bad field value (field, reason)
    └── CodecError               embedding codecs
        ├── UnknownCodec         a codec reference nobody registered (codec)
        ├── CodecMismatch        same codec id, different codebook (codec_id, expected, got)
        └── CodebookError        a codebook file that is missing, corrupt or inconsistent (path)
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error raised by :mod:`shared`."""


class DecodeError(ProtocolError):
    """Bytes that cannot be decoded into a message.

    ``reason`` is a human-readable sentence; ``field`` names the offending field (dotted path,
    e.g. ``"Detections.confidences[3]"``) when the failure is inside the body.
    """

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class FrameTooLarge(DecodeError):
    """A frame (or its decompressed body) over a hard size limit, in bytes."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{what} of {size} bytes exceeds max of {limit}")


class VersionMismatch(DecodeError):
    """A frame of a protocol version this build does not speak."""

    def __init__(self, got: int, supported: tuple[int, ...]) -> None:
        self.got = got
        self.supported = supported
        versions = ", ".join(str(v) for v in supported)
        super().__init__(f"protocol version {got} is not supported (supported: {versions})")


class EncodeError(ProtocolError):
    """A valid message that still cannot be put on the wire (for example, too large)."""


class InvalidMessage(ProtocolError, ValueError):
    """A message constructed with a field value outside the contract."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class CodecError(ProtocolError):
    """Base of embedding-codec errors."""


class UnknownCodec(CodecError):
    """A codec id or fingerprint that is not registered on this side."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        super().__init__(f"unknown embedding codec {codec}")


class CodecMismatch(CodecError):
    """Both ends name the same codec id but hold different codebooks (content hashes differ)."""

    def __init__(self, codec_id: str, expected: str, got: str) -> None:
        self.codec_id = codec_id
        self.expected = expected
        self.got = got
        super().__init__(
            f"codec {codec_id!r} mismatch: this side has content hash {expected[:16]}..., "
            f"the peer has {got[:16]}..."
        )


class CodebookError(CodecError):
    """A codebook file that cannot be used (missing, corrupt, or failing its own hash)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"codebook {path}: {reason}")
