"""A codebook that ships with an encoder in the models manifest: parsed, found next to the
model in the models directory, and used only with the manifest's content hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.errors import CodebookError
from shared.models import ManifestError, parse_manifest
from shared.models.codebooks import shipped_codebook, shipped_codebooks
from shared.pq import PQCodec, fit_pq

DIM = 64


def _manifest(codebook: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "tiny",
        "kind": "encoder",
        "family": "timm",
        "library_id": "test_vit",
        "file": "tiny.safetensors",
        "licence": "Apache-2.0",
        "dim": DIM,
        "preprocessing": {"input_size": [160, 160], "mean": [0.5] * 3, "std": [0.5] * 3},
        "download": None,
        "sha256": "0" * 64,
    }
    if codebook is not None:
        entry["codebook"] = codebook
    return {"version": 1, "models": [entry]}


@pytest.fixture(scope="module")
def book() -> PQCodec:
    x = np.random.default_rng(0).standard_normal((600, DIM)).astype(np.float32)
    return fit_pq(x, m=8, reduced_dim=16, kmeans_iters=3)


def test_a_provisioned_codebook_with_the_manifests_hash_is_used(
    tmp_path: Path, book: PQCodec
) -> None:
    manifest = parse_manifest(
        _manifest({"file": "tiny-pq8.npz", "content_hash": book.content_hash.hex()})
    )
    entry = manifest.get("tiny")
    assert entry is not None
    assert entry.to_dict()["codebook"] == {
        "file": "tiny-pq8.npz",
        "content_hash": book.content_hash.hex(),
    }
    assert shipped_codebook("tiny", tmp_path, manifest) is None  # not provisioned yet
    (tmp_path / "tiny").mkdir()
    book.save(tmp_path / "tiny" / "tiny-pq8.npz")  # next to the model (store key: its name)
    found = shipped_codebook("tiny", tmp_path, manifest)
    assert found is not None
    assert found.content_hash == book.content_hash
    assert [b.content_hash for b in shipped_codebooks(tmp_path, manifest)] == [book.content_hash]
    assert shipped_codebook("not-in-the-manifest", tmp_path, manifest) is None


def test_another_codebook_under_the_name_is_refused(tmp_path: Path, book: PQCodec) -> None:
    manifest = parse_manifest(_manifest({"file": "tiny-pq8.npz", "content_hash": "ab" * 32}))
    (tmp_path / "tiny").mkdir()
    book.save(tmp_path / "tiny" / "tiny-pq8.npz")
    with pytest.raises(CodebookError, match="is not the manifest's"):
        shipped_codebook("tiny", tmp_path, manifest)


@pytest.mark.parametrize(
    ("codebook", "message"),
    [
        ({"file": "../x.npz", "content_hash": "ab" * 32}, "plain .npz file name"),
        ({"file": "x.bin", "content_hash": "ab" * 32}, "plain .npz file name"),
        ({"file": "x.npz", "content_hash": "AB" * 32}, "64 lower-case hex"),
        ({"file": "x.npz"}, "missing content_hash"),
        ("x.npz", "must be a mapping"),
    ],
)
def test_bad_codebook_entries_are_refused(codebook: Any, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(_manifest(codebook))


def test_only_an_encoder_has_a_codebook() -> None:
    raw = _manifest({"file": "x.npz", "content_hash": "ab" * 32})
    raw["models"][0].update(kind="detector", dim=None)
    with pytest.raises(ManifestError, match="only an encoder has a codebook"):
        parse_manifest(raw)
