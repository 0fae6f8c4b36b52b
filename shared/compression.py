"""zstd compression of frame bodies, with optional trained dictionaries and hard limits.

Small messages (one embedding, a few counts) barely compress on their own; a dictionary trained
on a sample of real bodies (:func:`train_dictionary`) is what makes zstd pay off for them. The
compressor keeps the smaller of the raw and compressed body, so compression never costs bytes.

Decompression is bounded: the frame must declare its content size, which must not exceed
``MAX_BODY_BYTES``, and the zstd window is capped, so a hostile frame cannot ask for unbounded
memory.

Instances hold zstd contexts and are not thread-safe: use one per thread or task.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import zstandard

from shared import limits
from shared.errors import DecodeError, FrameTooLarge


@dataclass(frozen=True)
class Dictionary:
    """A zstd dictionary and its id (the id zstd writes into each frame)."""

    dict_id: int
    data: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> Dictionary:
        d = zstandard.ZstdCompressionDict(data)
        dict_id = d.dict_id()
        if dict_id == 0:
            raise ValueError("not a zstd dictionary (no dictionary id); train one with zstd")
        return cls(dict_id, data)

    @classmethod
    def load(cls, path: str | Path) -> Dictionary:
        return cls.from_bytes(Path(path).read_bytes())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def train_dictionary(samples: Iterable[bytes], size: int = 16_384) -> Dictionary:
    """Train a zstd dictionary of at most ``size`` bytes on sample bodies (hundreds or more)."""
    data = zstandard.train_dictionary(size, list(samples))
    return Dictionary(data.dict_id(), data.as_bytes())


class Compressor:
    """Compresses bodies (optionally with one dictionary) and decompresses with any known one."""

    def __init__(
        self,
        *,
        level: int = 3,
        dictionary: Dictionary | None = None,
        known: Sequence[Dictionary] = (),
        min_bytes: int = 64,
    ) -> None:
        self.level = level
        self.min_bytes = min_bytes
        self.dictionary = dictionary
        self._dicts = {d.dict_id: zstandard.ZstdCompressionDict(d.data) for d in known}
        if dictionary is not None:
            self._dicts[dictionary.dict_id] = zstandard.ZstdCompressionDict(dictionary.data)
        # zstandard's contexts are not thread-safe (shared, they corrupt frames or crash):
        # each thread that uses this compressor gets its own
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        cctx: zstandard.ZstdCompressor | None = getattr(self._local, "cctx", None)
        if cctx is None:
            d = self.dictionary
            cctx = self._local.cctx = zstandard.ZstdCompressor(
                level=self.level,
                dict_data=self._dicts[d.dict_id] if d else None,
                write_content_size=True,
                write_checksum=False,
                write_dict_id=True,
            )
        return cctx

    def compress(self, body: bytes) -> bytes | None:
        """The compressed body, or None when compressing would not make it smaller."""
        if len(body) < self.min_bytes:
            return None
        packed = self._compressor().compress(body)
        return packed if len(packed) < len(body) else None

    def decompress(self, data: bytes) -> bytes:
        """Decompress one zstd frame of a body; :class:`DecodeError` on anything wrong."""
        try:
            params = zstandard.get_frame_parameters(data)
        except zstandard.ZstdError as exc:
            raise DecodeError(f"corrupt zstd frame header: {exc}") from None
        size = params.content_size
        if size == zstandard.CONTENTSIZE_UNKNOWN or size == zstandard.CONTENTSIZE_ERROR:
            raise DecodeError("zstd frame does not declare its content size")
        if size > limits.MAX_BODY_BYTES:
            raise FrameTooLarge("decompressed body", size, limits.MAX_BODY_BYTES)
        if params.window_size > limits.MAX_ZSTD_WINDOW_BYTES:
            raise DecodeError(
                f"zstd window of {params.window_size} bytes exceeds max of "
                f"{limits.MAX_ZSTD_WINDOW_BYTES}"
            )
        dctx = self._decompressor(params.dict_id)
        try:
            body = dctx.decompress(
                data, max_output_size=limits.MAX_BODY_BYTES, allow_extra_data=False
            )
        except zstandard.ZstdError as exc:
            raise DecodeError(f"corrupt zstd body: {exc}") from None
        if len(body) != size:
            raise DecodeError(f"zstd body is {len(body)} bytes, header declared {size}")
        return body

    def _decompressor(self, dict_id: int) -> zstandard.ZstdDecompressor:
        contexts: dict[int, zstandard.ZstdDecompressor] | None = getattr(self._local, "dctx", None)
        if contexts is None:
            contexts = self._local.dctx = {}
        dctx = contexts.get(dict_id)
        if dctx is None:
            if dict_id and dict_id not in self._dicts:
                raise DecodeError(f"zstd dictionary {dict_id} is not known here")
            dctx = zstandard.ZstdDecompressor(
                dict_data=self._dicts.get(dict_id) if dict_id else None,
                max_window_size=limits.MAX_ZSTD_WINDOW_BYTES,
            )
            contexts[dict_id] = dctx
        return dctx


@cache
def default_compressor() -> Compressor:
    """The process's dictionary-less :class:`Compressor` (safe to share: contexts per thread)."""
    return Compressor()
