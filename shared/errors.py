"""The error tree of the wire contract.

Callers catch only these; every one carries the fields that say exactly what went wrong::

    ProtocolError
    ├── DecodeError              bytes that are not a valid frame (reason, field)
    │   ├── FrameTooLarge        frame or body over its hard limit (size, limit)
    │   ├── VarintError          a varint cut short or overlong (start, stop, max_bytes,
    │   │                        truncated); decoders map it to their own error
    │   └── VersionMismatch      a protocol version this build does not speak (got, supported)
    ├── EncodeError              a message that cannot be put on the wire (e.g. too large)
    ├── InvalidMessage           a message built with a bad field value (field, reason)
    └── CodecError               embedding codecs
        ├── UnknownCodec         a codec reference nobody registered (codec)
        ├── CodecMismatch        same codec id, different codebook (codec_id, expected, got)
        └── CodebookError        a codebook file that is missing, corrupt or inconsistent (path)

The encoders that the edge and the cloud build alike (:mod:`shared.timm_encoder`,
:mod:`shared.open_clip_encoder`) have their own tree; the edge and the cloud map it to their
own errors at their boundary::

    EncoderModelError            a timm or open_clip encoder that cannot be built
    ├── UnknownEncoderModel      a model name timm does not know (name)
    ├── UnknownOpenClipModel     an architecture open_clip does not know (name)
    ├── EncoderWeightsNotFound   a weights file that is not there (path, reason)
    ├── EncoderWeightsUnreadable a weights file that is no state dict (path, reason)
    └── EncoderWeightsMismatch   a weights file whose keys or shapes do not fit (path, missing,
                                 unexpected, wrong_shapes)
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


class VarintError(DecodeError):
    """A LEB128 varint cut short or longer than its reader allows (:mod:`shared.varint`).

    Each wire decoder catches it and raises its own error in its own words; the fields say
    where: ``start`` is the offset of the varint's first byte, ``stop`` the offset where reading
    stopped (the missing byte's when ``truncated``, else ``start + max_bytes``).
    """

    def __init__(self, *, start: int, stop: int, max_bytes: int, truncated: bool) -> None:
        self.start = start
        self.stop = stop
        self.max_bytes = max_bytes
        self.truncated = truncated
        super().__init__(
            f"varint at offset {start} is cut short at offset {stop}"
            if truncated
            else f"varint at offset {start} is longer than {max_bytes} bytes"
        )


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


class EncoderModelError(Exception):
    """Base of the errors of building a timm encoder (:mod:`shared.timm_encoder`)."""


class UnknownEncoderModel(EncoderModelError, ValueError):
    """A model name that timm does not know."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown timm model {name!r} (see timm.list_models())")


class UnknownOpenClipModel(EncoderModelError, ValueError):
    """An architecture that open_clip does not know (:mod:`shared.open_clip_encoder`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown open_clip model {name!r} (see open_clip.list_models())")


class EncoderWeightsNotFound(EncoderModelError):
    """Weights that are not there: a missing file, or none in the Hugging Face cache."""

    def __init__(self, path: str, reason: str = "no such file") -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"encoder weights {path}: {reason}")


class EncoderWeightsUnreadable(EncoderModelError):
    """A weights file that cannot be read as a state dict (corrupt, or not weights at all)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"encoder weights {path} cannot be read as a state dict: {reason}")


#: how many key names an :class:`EncoderWeightsMismatch` message lists of each kind
MISMATCH_LISTED = 10


def _first(items: list[str]) -> str:
    more = len(items) - MISMATCH_LISTED
    return ", ".join(items[:MISMATCH_LISTED]) + (f", ... ({more} more)" if more > 0 else "")


class EncoderWeightsMismatch(EncoderModelError):
    """A state dict whose keys or tensor shapes do not fit the model built.

    ``missing``: the model's keys that the file lacks; ``unexpected``: the file's keys that the
    model lacks; ``wrong_shapes``: ``(key, shape in the file, shape in the model)``.
    """

    def __init__(
        self,
        path: str,
        model: str,
        missing: list[str],
        unexpected: list[str],
        wrong_shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.path = path
        self.model = model
        self.missing = missing
        self.unexpected = unexpected
        self.wrong_shapes = wrong_shapes
        parts = [
            f"{len(items)} {what}: {_first(items)}"
            for what, items in (
                ("missing key(s)", missing),
                ("unexpected key(s)", unexpected),
                (
                    "key(s) of the wrong shape",
                    [f"{k} (file {list(f)}, model {list(m)})" for k, f, m in wrong_shapes],
                ),
            )
            if items
        ]
        super().__init__(
            f"encoder weights {path} do not fit the timm model {model}: {'; '.join(parts)}. "
            "Check the model name (--encoder) and the options it was trained with "
            "(--model-kwargs KEY=VALUE, e.g. a different variant or drop rate; pad_type=same "
            "for TensorFlow-ported weights)"
        )
