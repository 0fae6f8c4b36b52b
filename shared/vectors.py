"""Embedding codecs: how one vector becomes the bytes of an :class:`Embedding` message.

Every codec has a stable ``codec_id`` (``f32``, ``f16``, ``int8``, ``pq32x8``, ...), the ``dim``
it encodes, and a ``content_hash`` (SHA-256) over everything needed to decode: for the built-in
codecs their id and dim, for product-quantised codes the whole codebook. Each message names its
codec by the 32-bit ``fingerprint`` (the first four hash bytes, little-endian), so a message
spooled under one codebook is never decoded with another. Both ends compare hashes in the
session handshake; a difference is a :class:`CodecMismatch`.

The parameter-free codecs are kept in a string-keyed registry (``@register``); product
quantisers are fitted on sample embeddings (:mod:`shared.pq`) and loaded from a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from shared.errors import CodecError, CodecMismatch, UnknownCodec
from shared.limits import MAX_EMBEDDING_DIM

F32Array = NDArray[np.float32]
U8Array = NDArray[np.uint8]


@runtime_checkable
class VectorCodec(Protocol):
    """Turns (n, dim) float vectors into (n, code_bytes) uint8 codes and back."""

    @property
    def codec_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def code_bytes(self) -> int: ...

    @property
    def content_hash(self) -> bytes: ...

    def encode(self, vectors: NDArray[np.floating] | NDArray[np.integer]) -> U8Array: ...

    def decode(self, codes: U8Array | bytes) -> F32Array: ...


def fingerprint(codec: VectorCodec) -> int:
    """The 32-bit id a message uses to name ``codec`` (first 4 bytes of its content hash)."""
    return int.from_bytes(codec.content_hash[:4], "little")


def as_matrix(vectors: NDArray[np.floating] | NDArray[np.integer], dim: int) -> F32Array:
    """Validate ``vectors`` as (n, dim) or (dim,) finite floats; returns (n, dim) float32."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise CodecError(f"expected vectors of shape (n, {dim}), got {np.shape(vectors)}")
    if not np.isfinite(x).all():
        raise CodecError("vectors contain NaN or inf")
    return x


def as_codes(codes: U8Array | bytes, code_bytes: int) -> U8Array:
    """Validate codes as (n, code_bytes) uint8 (a bytes object is one code)."""
    if isinstance(codes, (bytes, bytearray, memoryview)):
        c = np.frombuffer(bytes(codes), dtype=np.uint8)[None, :]
    else:
        c = np.asarray(codes)
        if c.ndim == 1:
            c = c[None, :]
    if c.dtype != np.uint8 or c.ndim != 2 or c.shape[1] != code_bytes:
        raise CodecError(
            f"expected codes of {code_bytes} bytes each, got shape {np.shape(c)} of {c.dtype}"
        )
    return c


def _builtin_hash(codec_id: str, dim: int) -> bytes:
    return hashlib.sha256(f"semcom-codec/{codec_id}/dim={dim}/v1".encode()).digest()


class _Builtin:
    """Shared parts of the parameter-free codecs."""

    codec_id: str = ""
    bytes_per_dim: float = 0

    def __init__(self, dim: int) -> None:
        if not 1 <= dim <= MAX_EMBEDDING_DIM:
            raise CodecError(f"embedding dim {dim} is outside [1, {MAX_EMBEDDING_DIM}]")
        self.dim = dim
        self.content_hash = _builtin_hash(self.codec_id, dim)

    @property
    def code_bytes(self) -> int:
        raise NotImplementedError

    def encode(self, vectors: NDArray[np.floating] | NDArray[np.integer]) -> U8Array:
        raise NotImplementedError

    def decode(self, codes: U8Array | bytes) -> F32Array:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


_REGISTRY: dict[str, type[_Builtin]] = {}


def register(codec_id: str) -> Callable[[type[_Builtin]], type[_Builtin]]:
    """Class decorator: make a parameter-free codec available as ``create_codec(codec_id, dim)``."""

    def add(cls: type[_Builtin]) -> type[_Builtin]:
        cls.codec_id = codec_id
        _REGISTRY[codec_id] = cls
        return cls

    return add


@register("f32")
class Float32Codec(_Builtin):
    """Little-endian IEEE float32: exact; 4 bytes per dimension."""

    @property
    def code_bytes(self) -> int:
        return 4 * self.dim

    def encode(self, vectors: NDArray[np.floating] | NDArray[np.integer]) -> U8Array:
        x = as_matrix(vectors, self.dim).astype("<f4", copy=False)
        return np.ascontiguousarray(x).view(np.uint8).reshape(len(x), -1)

    def decode(self, codes: U8Array | bytes) -> F32Array:
        c = np.ascontiguousarray(as_codes(codes, self.code_bytes))
        return c.view("<f4").astype(np.float32).reshape(len(c), self.dim)


@register("f16")
class Float16Codec(_Builtin):
    """Little-endian IEEE float16: 2 bytes per dimension, ~3 significant digits."""

    @property
    def code_bytes(self) -> int:
        return 2 * self.dim

    def encode(self, vectors: NDArray[np.floating] | NDArray[np.integer]) -> U8Array:
        x = as_matrix(vectors, self.dim)
        if np.abs(x).max(initial=0.0) > 65_504.0:
            raise CodecError("vector values exceed the float16 range (|x| > 65504)")
        return np.ascontiguousarray(x.astype("<f2")).view(np.uint8).reshape(len(x), -1)

    def decode(self, codes: U8Array | bytes) -> F32Array:
        c = np.ascontiguousarray(as_codes(codes, self.code_bytes))
        return c.view("<f2").astype(np.float32).reshape(len(c), self.dim)


@register("int8")
class Int8Codec(_Builtin):
    """Symmetric int8 with a per-vector float32 scale: 4 + dim bytes.

    code = [scale as <f4][round(x / scale) as int8 * dim], scale = max|x| / 127.
    """

    @property
    def code_bytes(self) -> int:
        return 4 + self.dim

    def encode(self, vectors: NDArray[np.floating] | NDArray[np.integer]) -> U8Array:
        x = as_matrix(vectors, self.dim)
        scale = np.abs(x).max(axis=1, keepdims=True) / 127.0
        safe = np.where(scale > 0, scale, 1.0)
        q = np.clip(np.rint(x / safe), -127, 127).astype(np.int8)
        out = np.empty((len(x), self.code_bytes), dtype=np.uint8)
        out[:, :4] = scale.astype("<f4").view(np.uint8)
        out[:, 4:] = q.view(np.uint8)
        return out

    def decode(self, codes: U8Array | bytes) -> F32Array:
        c = np.ascontiguousarray(as_codes(codes, self.code_bytes))
        scale = np.ascontiguousarray(c[:, :4]).view("<f4").astype(np.float32)
        if not np.isfinite(scale).all():
            raise CodecError("int8 code carries a non-finite scale")
        q = c[:, 4:].view(np.int8).astype(np.float32)
        return q * scale


def builtin_codecs() -> tuple[str, ...]:
    """Ids of the parameter-free codecs."""
    return tuple(_REGISTRY)


def create_codec(spec: str, dim: int) -> VectorCodec:
    """A codec by built-in id (``f32``, ``f16``, ``int8``) or codebook file path (``*.npz``)."""
    factory = _REGISTRY.get(spec)
    if factory is not None:
        return factory(dim)
    if spec.endswith(".npz"):
        from shared.pq import load_codebook  # local import: pq pulls in the fitter

        codec = load_codebook(spec)
        if codec.dim != dim:
            raise CodecError(f"codebook {spec} encodes dim {codec.dim}, the encoder gives {dim}")
        return codec
    raise UnknownCodec(f"{spec!r} (built-in: {', '.join(_REGISTRY)}; or a codebook .npz path)")


class CodecSet:
    """The codecs one side can decode, found by fingerprint; checks peers' announcements."""

    def __init__(self, codecs: Iterable[VectorCodec] = ()) -> None:
        self._by_fingerprint: dict[int, VectorCodec] = {}
        for codec in codecs:
            self.add(codec)

    def add(self, codec: VectorCodec) -> int:
        fp = fingerprint(codec)
        known = self._by_fingerprint.get(fp)
        if known is not None and known.content_hash != codec.content_hash:
            raise CodecError(f"fingerprint collision between {known.codec_id} and {codec.codec_id}")
        self._by_fingerprint[fp] = codec
        return fp

    def __contains__(self, fp: int) -> bool:
        return fp in self._by_fingerprint

    def __len__(self) -> int:
        return len(self._by_fingerprint)

    def resolve(self, fp: int) -> VectorCodec:
        """The codec a message names; :class:`UnknownCodec` if none was announced."""
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise UnknownCodec(f"fingerprint {fp:#010x}") from None

    def accept(self, codec_id: str, content_hash: bytes, dim: int) -> VectorCodec:
        """Check a codec a peer announced; built-ins are created on demand.

        Raises :class:`UnknownCodec` for an id this side cannot decode, and
        :class:`CodecMismatch` when this side holds the id with a different content hash.
        """
        same_id = [c for c in self._by_fingerprint.values() if c.codec_id == codec_id]
        for codec in same_id:
            if codec.content_hash == content_hash:
                return codec
        if codec_id in _REGISTRY:
            codec = _REGISTRY[codec_id](dim)
            if codec.content_hash == content_hash:
                self.add(codec)
                return codec
            same_id.append(codec)
        if same_id:
            raise CodecMismatch(codec_id, same_id[0].content_hash.hex(), content_hash.hex())
        raise UnknownCodec(f"{codec_id!r} (hash {content_hash.hex()[:16]}...)")


CODEC_LADDER: Final = ("f16", "int8")
"""Built-in rungs of the bandwidth ladder, widest first; a fitted ``pq`` codebook is the last."""


def load_embeddings(path: str | Path) -> F32Array:
    """Sample embeddings from ``.npy`` (n, dim) or ``.npz`` (array ``embeddings``)."""
    p = Path(path)
    try:
        data = np.load(p, allow_pickle=False)
        arr = data["embeddings"] if isinstance(data, np.lib.npyio.NpzFile) else data
    except (OSError, ValueError, KeyError) as exc:
        raise CodecError(f"cannot read embeddings from {p}: {exc}") from None
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise CodecError(f"embeddings in {p} must be a 2-d (n, dim) array, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise CodecError(f"embeddings in {p} contain NaN or inf")
    return arr
