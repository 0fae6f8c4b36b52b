"""Embedding codecs: round trips, hashes and fingerprints, codebook files, mismatches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared import synthetic
from shared.errors import CodebookError, CodecError, CodecMismatch, UnknownCodec
from shared.pq import PQCodec, fit_pq, load_codebook
from shared.vectors import (
    CodecSet,
    Float16Codec,
    Float32Codec,
    Int8Codec,
    builtin_codecs,
    create_codec,
    fingerprint,
    load_embeddings,
)

finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


def _vectors(dim: int) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.just(dim)), elements=finite)


@settings(max_examples=100)
@given(dim=st.integers(1, 64), data=st.data())
def test_f32_is_exact(dim: int, data: st.DataObject) -> None:
    x = data.draw(_vectors(dim))
    codec = Float32Codec(dim)
    codes = codec.encode(x)
    assert codes.shape == (len(x), 4 * dim)
    np.testing.assert_array_equal(codec.decode(codes), x)


@settings(max_examples=100)
@given(dim=st.integers(1, 64), data=st.data())
def test_f16_within_half_precision(dim: int, data: st.DataObject) -> None:
    x = data.draw(_vectors(dim))
    codec = Float16Codec(dim)
    y = codec.decode(codec.encode(x))
    np.testing.assert_allclose(y, x, rtol=1e-3, atol=1e-4)


@settings(max_examples=100)
@given(dim=st.integers(1, 64), data=st.data())
def test_int8_error_bounded_by_half_step(dim: int, data: st.DataObject) -> None:
    x = data.draw(_vectors(dim))
    codec = Int8Codec(dim)
    codes = codec.encode(x)
    assert codes.shape == (len(x), dim + 4)
    y = codec.decode(codes)
    step = np.abs(x).max(axis=1, keepdims=True) / 127.0
    assert np.all(np.abs(y - x) <= step * 0.5 + 1e-6 * (1 + np.abs(x)))


def test_builtin_registry_and_hashes() -> None:
    assert builtin_codecs() == ("f32", "f16", "int8")
    a, b = create_codec("int8", 384), create_codec("int8", 384)
    assert a.content_hash == b.content_hash
    assert create_codec("int8", 768).content_hash != a.content_hash
    assert fingerprint(a) == int.from_bytes(a.content_hash[:4], "little")
    with pytest.raises(UnknownCodec, match="'zip'"):
        create_codec("zip", 384)


def test_bad_inputs_are_typed_errors() -> None:
    codec = Int8Codec(8)
    with pytest.raises(CodecError, match=r"shape \(n, 8\)"):
        codec.encode(np.zeros((2, 9)))
    with pytest.raises(CodecError, match="NaN or inf"):
        codec.encode(np.full(8, np.nan))
    with pytest.raises(CodecError, match="12 bytes each"):
        codec.decode(b"\x00" * 11)
    with pytest.raises(CodecError, match="non-finite scale"):
        codec.decode(b"\x00\x00\xc0\x7f" + b"\x01" * 8)
    with pytest.raises(CodecError, match="float16 range"):
        Float16Codec(2).encode(np.array([1e6, 0.0]))


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    spec = synthetic.ClusteredSpec(dim=64, clusters=16)
    train, test = synthetic.split((3000, 500), spec, seed=3)
    return train, test


@pytest.fixture(scope="module")
def pq(sample: tuple[np.ndarray, np.ndarray]) -> PQCodec:
    return fit_pq(sample[0], m=8, reduced_dim=32, kmeans_iters=8, seed=1)


def test_pq_codes_and_quality(pq: PQCodec, sample: tuple[np.ndarray, np.ndarray]) -> None:
    test = sample[1]
    codes = pq.encode(test)
    assert codes.shape == (len(test), 8)
    assert codes.dtype == np.uint8
    y = pq.decode(codes)
    cos = (y * test).sum(1) / np.linalg.norm(y, axis=1)
    assert cos.mean() > 0.85  # a random codebook gives ~0; see the bench for real figures
    np.testing.assert_array_equal(pq.encode(y), codes)  # decoded vectors are fixed points
    assert pq.codec_id == "pq8x8"


def test_pq_is_deterministic_for_a_seed(sample: tuple[np.ndarray, np.ndarray], pq: PQCodec) -> None:
    again = fit_pq(sample[0], m=8, reduced_dim=32, kmeans_iters=8, seed=1)
    assert again.content_hash == pq.content_hash


def test_pq_save_load_and_corruption(pq: PQCodec, tmp_path: Path) -> None:
    path = tmp_path / "book.npz"
    pq.save(path)
    loaded = load_codebook(path)
    assert loaded.content_hash == pq.content_hash
    assert loaded.info == pq.info
    assert create_codec(str(path), 64).content_hash == pq.content_hash
    with pytest.raises(CodecError, match="encodes dim 64"):
        create_codec(str(path), 32)
    # Change one centroid and keep the recorded hash: loading must notice.
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["centroids"] = arrays["centroids"].copy()
    arrays["centroids"][0, 0, 0] += 1.0
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CodebookError, match="content hash does not match"):
        load_codebook(tmp_path / "bad.npz")
    with pytest.raises(CodebookError, match="file not found"):
        load_codebook(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CodebookError, match="not a semcom codebook"):
        load_codebook(tmp_path / "junk.npz")


def test_fit_rejects_bad_parameters() -> None:
    with pytest.raises(CodecError, match="at least 256 samples"):
        fit_pq(np.zeros((10, 16)), m=4)
    with pytest.raises(CodecError, match="multiple of m=8"):
        fit_pq(np.random.default_rng(0).standard_normal((300, 64)), m=8, reduced_dim=20)


def test_codec_set_accepts_resolves_and_refuses(pq: PQCodec) -> None:
    codecs = CodecSet([pq])
    assert codecs.resolve(fingerprint(pq)) is pq
    int8 = create_codec("int8", 64)
    assert codecs.accept("int8", int8.content_hash, 64).content_hash == int8.content_hash
    assert fingerprint(int8) in codecs
    with pytest.raises(CodecMismatch, match="'int8' mismatch"):
        codecs.accept("int8", create_codec("int8", 32).content_hash, 64)
    with pytest.raises(CodecMismatch, match="'pq8x8' mismatch"):
        codecs.accept("pq8x8", b"\x00" * 32, 64)
    with pytest.raises(UnknownCodec, match="'pq16x8'"):
        codecs.accept("pq16x8", b"\x00" * 32, 64)
    with pytest.raises(UnknownCodec, match="fingerprint 0x00000000"):
        codecs.resolve(0)


def test_load_embeddings(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    np.savez(tmp_path / "e.npz", embeddings=x)
    np.testing.assert_array_equal(load_embeddings(tmp_path / "e.npy"), x)
    np.testing.assert_array_equal(load_embeddings(tmp_path / "e.npz"), x)
    np.save(tmp_path / "bad.npy", np.zeros(3))
    with pytest.raises(CodecError, match="2-d"):
        load_embeddings(tmp_path / "bad.npy")
    with pytest.raises(CodecError, match="cannot read"):
        load_embeddings(tmp_path / "none.npy")


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_pq_round_trip_properties(pq: PQCodec, data: st.DataObject) -> None:
    x = data.draw(
        hnp.arrays(
            np.float32,
            st.tuples(st.integers(1, 6), st.just(64)),
            elements=st.floats(-2, 2, allow_nan=False, width=32),
        )
    )
    codes = pq.encode(x)
    assert codes.shape == (len(x), pq.code_bytes)
    y = pq.decode(codes)
    assert y.shape == x.shape
    assert np.isfinite(y).all()
    # Decoding is idempotent: a decoded vector re-encodes to a code that decodes to itself.
    np.testing.assert_allclose(pq.decode(pq.encode(y)), y, atol=1e-5)
