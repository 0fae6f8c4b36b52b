"""The error tree of the crop decoder; callers catch only these.

::

    DecoderError                 base of every error raised by :mod:`cloud.decoder`
    ├── CheckpointError          a checkpoint file that cannot be used (path, reason)
    │   └── CheckpointNotFound   no file at the path
    ├── DecoderMismatch          a checkpoint made for another encoder / dim / codec (field)
    ├── DatasetError             a cached crop dataset that is missing, corrupt or inconsistent
    └── DecodeRefused            one detection cannot be rebuilt (detection_id, reason)
        ├── UnknownDetection     no such detection in the catalog
        ├── NoEmbedding          the detection exists but carries no embedding
        ├── SpaceMismatch        its embedding is in another space than the decoder's
        └── CodecUnavailable     its code does not decode in this cloud
"""

from __future__ import annotations

from pathlib import Path


class DecoderError(Exception):
    """Base of every error raised by :mod:`cloud.decoder`."""


class CheckpointError(DecoderError):
    """A checkpoint that is not a readable semcom decoder checkpoint."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"decoder checkpoint {self.path}: {reason}")


class CheckpointNotFound(CheckpointError):
    """No checkpoint file where one was expected."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(
            path, "no such file (train one with `semcom cloud train-decoder --out DIR`)"
        )


class DecoderMismatch(DecoderError):
    """A decoder trained for other embeddings than the ones it is asked to decode.

    A decoder maps one encoder's vectors (one dimension, one codec's quantisation noise) to
    pixels; used on another encoder's vectors its output is meaningless, so this is refused.
    """

    def __init__(self, field: str, expected: object, found: object, path: Path | str) -> None:
        self.field = field
        self.expected = expected
        self.found = found
        self.path = Path(path)
        super().__init__(
            f"decoder {self.path} was trained for {field} {found!r}, not {expected!r}: "
            f"train a decoder for {expected!r} (`semcom cloud train-decoder`)"
        )


class DatasetError(DecoderError):
    """A crop dataset file that is missing, corrupt or inconsistent."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"crop dataset {self.path}: {reason}")


class DecodeRefused(DecoderError):
    """One detection that cannot be rebuilt, and why."""

    def __init__(self, detection_id: int, reason: str) -> None:
        self.detection_id = detection_id
        self.reason = reason
        super().__init__(f"detection {detection_id}: {reason}")


class UnknownDetection(DecodeRefused):
    def __init__(self, detection_id: int) -> None:
        super().__init__(detection_id, "no such detection")


class NoEmbedding(DecodeRefused):
    def __init__(self, detection_id: int) -> None:
        super().__init__(
            detection_id,
            "has no embedding (edges embed only some sightings of a track); "
            "try another detection of its track",
        )


class SpaceMismatch(DecodeRefused):
    def __init__(self, detection_id: int, space: str, decoder_space: str) -> None:
        self.space = space
        self.decoder_space = decoder_space
        super().__init__(
            detection_id,
            f"is embedded in {space!r}, the configured decoder rebuilds {decoder_space!r}",
        )


class CodecUnavailable(DecodeRefused):
    """The stored code names a codec (a codebook) this cloud has not loaded."""
