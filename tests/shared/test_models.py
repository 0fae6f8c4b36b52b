"""Model provisioning without network: the shipped manifest, import, verify, states, resolve."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from shared.models import (
    ManifestError,
    ModelFileNotFound,
    ModelHashMismatch,
    ModelKindMismatch,
    ModelNotProvisioned,
    ModelStore,
    UnknownModel,
    is_model_name,
    load_manifest,
    parse_manifest,
    resolve,
    sha256_file,
)

CORAL_SHA = "a48cdfd69bd82dfbfb52fc3ccba419d774fae83c3c32e7e090abcfec2eaf6678"


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    monkeypatch.setenv("SEMCOM_MODELS_DIR", str(tmp_path / "models"))
    return ModelStore()


# ---------------------------------------------------------------------- manifest


def test_shipped_manifest_names_every_supported_model() -> None:
    m = load_manifest()
    assert set(m.names("detector")) == {"yolo11n", "yolo11s", "yolo11m", "yolo11n-int8-320"}
    assert m.names("text_encoder") == ("clip-vit-b32-text",)
    assert m.names("reid") == ("osnet_x0_25_msmt17",)
    vit = m.entries["vit-b16"]
    assert (vit.family, vit.library_id, vit.dim) == (
        "timm",
        "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        768,
    )
    assert vit.download is not None
    assert vit.download.repo == "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
    assert m.entries["vit-s16"].dim == 384
    coral = m.entries["mobilenetv2_100_coral"]
    assert coral.import_only
    assert coral.sha256 == CORAL_SHA
    assert dict(coral.model_kwargs) == {"pad_type": "same"}  # headless: classifier dropped
    assert coral.preprocessing is not None
    assert coral.preprocessing.mean == coral.preprocessing.std == (0.5, 0.5, 0.5)
    osnet = m.entries["osnet_x0_25_msmt17"]
    assert osnet.preprocessing is not None
    assert osnet.preprocessing.input_size == (256, 128)
    int8 = m.entries["yolo11n-int8-320"]
    assert int8.preprocessing is not None
    assert int8.preprocessing.input_size == (320, 320)
    image, text = m.entries["clip-vit-b32-image"], m.entries["clip-vit-b32-text"]
    assert (image.pretrained_tag, image.dim, text.dim) == ("laion2b_s34b_b79k", 512, 512)
    assert m.sharing_file(image) == (image, text)  # one download, two towers
    for entry in m:
        assert entry.licence
        assert (entry.dim is None) == (entry.kind == "detector")
        json.dumps(entry.to_dict())  # list --json can print every fact


def _raw() -> dict[str, Any]:
    return {
        "version": 1,
        "models": [
            {
                "name": "tiny",
                "kind": "encoder",
                "family": "timm",
                "library_id": "test_vit",
                "file": "tiny.safetensors",
                "licence": "Apache-2.0",
                "dim": 64,
                "preprocessing": {"input_size": [160, 160], "mean": [0.5] * 3, "std": [0.5] * 3},
                "download": None,
                "sha256": "0" * 64,
            }
        ],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(colour="red"), r"unknown key\(s\) colour"),
        (lambda e: e.pop("licence"), "missing licence"),
        (lambda e: e.update(kind="segmenter"), "kind must be one of"),
        (lambda e: e.update(sha256="ABC"), "sha256 must be 64 lower-case hex"),
        (lambda e: e.update(sha256=None), "import-only entry needs its sha256"),
        (lambda e: e.update(dim=None), "dim is required for an encoder"),
        (lambda e: e.update(file="../x.bin"), "plain file name"),
        (lambda e: e["preprocessing"].update(input_size=[224]), r"\[height, width\]"),
        (lambda e: e["preprocessing"].update(std=[0.5, 0, 0.5]), "std must be positive"),
        (lambda e: e.update(download={"hub": "ftp", "repo": "x"}), "hub must be one of"),
    ],
)
def test_invalid_manifest_entries_are_refused(change: Any, message: str) -> None:
    raw = _raw()
    change(raw["models"][0])
    with pytest.raises(ManifestError, match=message):
        parse_manifest(raw, "test.yaml")


def test_duplicate_names_and_versions_are_refused() -> None:
    raw = _raw()
    raw["models"].append(copy.deepcopy(raw["models"][0]))
    with pytest.raises(ManifestError, match="duplicate name 'tiny'"):
        parse_manifest(raw)
    with pytest.raises(ManifestError, match="version 2 is not supported"):
        parse_manifest({**_raw(), "version": 2})


# ---------------------------------------------------------------------- import, verify, states


def test_import_records_the_hash_and_resolves(store: ModelStore, tmp_path: Path) -> None:
    weights = _file(tmp_path / "downloaded.pt", b"yolo weights " * 1000)
    record = store.import_file(weights, "yolo11n")
    assert record.source == "imported"
    assert record.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record.size == 13000
    lock = json.loads((store.root / "models.lock.json").read_text())
    assert lock["models"]["yolo11n"]["file"] == "ultralytics--assets/yolo11n.pt"
    resolved = resolve("yolo11n", "detector")  # the store of $SEMCOM_MODELS_DIR
    assert resolved.path == store.root / "ultralytics--assets" / "yolo11n.pt"
    assert resolved.path.read_bytes() == weights.read_bytes()
    assert resolved.entry is not None
    assert resolved.entry.name == "yolo11n"
    assert resolved.sha256 == record.sha256
    states = {s.entry.name: s.state for s in store.statuses()}
    assert states["yolo11n"] == "imported"
    assert states["vit-b16"] == "missing"
    assert {s.entry.name: s.state for s in store.statuses(rehash=True)}["yolo11n"] == "hash ok"


def test_a_tampered_file_is_a_hash_mismatch(store: ModelStore, tmp_path: Path) -> None:
    store.import_file(_file(tmp_path / "w.pt", b"a" * 4096), "yolo11s")
    path = store.root / "ultralytics--assets" / "yolo11s.pt"
    path.write_bytes(b"b" + b"a" * 4095)  # same size, one byte changed
    status = store.status(store.entry("yolo11s"))
    assert status.state == "hash mismatch"  # the mtime changed, so it was hashed
    assert "differs from the lock's" in status.detail
    assert status.actual_sha256 == sha256_file(path)
    with pytest.raises(ModelHashMismatch, match="hash mismatch for model 'yolo11s'") as info:
        resolve("yolo11s", "detector")
    assert info.value.against == "lock"


def test_a_wrong_file_for_a_known_hash_is_refused(store: ModelStore, tmp_path: Path) -> None:
    wrong = _file(tmp_path / "mobilenet.safetensors", b"not the coral weights")
    with pytest.raises(ModelHashMismatch) as info:
        store.import_file(wrong, "mobilenetv2_100_coral")
    message = str(info.value)
    assert CORAL_SHA in message  # both hashes, so the operator can compare
    assert sha256_file(wrong) in message
    assert "nothing was imported" in message
    assert not store.lock_path.exists()
    assert not (store.root / "mobilenetv2_100_coral").exists()
    assert store.statuses(["mobilenetv2_100_coral"])[0].state == "missing"


def test_import_errors_name_the_problem(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(ModelFileNotFound, match=r"no-such\.pt"):
        store.import_file(tmp_path / "no-such.pt", "yolo11n")
    with pytest.raises(UnknownModel, match="unknown model 'yolo99'"):
        store.import_file(_file(tmp_path / "x.pt", b"x"), "yolo99")


def test_one_import_provisions_both_clip_towers(store: ModelStore, tmp_path: Path) -> None:
    store.import_file(_file(tmp_path / "clip.safetensors", b"clip" * 100), "clip-vit-b32-text")
    image = resolve("clip-vit-b32-image", "encoder")
    text = resolve("clip-vit-b32-text", "text_encoder")
    assert image.path == text.path
    assert image.entry is not None
    assert image.entry.library_id == "ViT-B-32"


# ---------------------------------------------------------------------- resolve


def test_resolve_paths_names_and_errors(store: ModelStore, tmp_path: Path) -> None:
    own = _file(tmp_path / "custom.onnx", b"onnx")
    assert resolve(own, "detector").path == own  # an existing path is used as is
    assert resolve(str(own)).entry is None
    with pytest.raises(ModelNotProvisioned, match="run `semcom models pull vit-s16`"):
        resolve("vit-s16", "encoder")
    with pytest.raises(
        ModelNotProvisioned, match="`semcom models import FILE --as osnet_x0_25_msmt17`"
    ) as info:
        resolve("osnet_x0_25_msmt17", "reid")
    assert info.value.import_only
    with pytest.raises(ModelKindMismatch, match="'vit-s16' is of kind encoder, not detector"):
        resolve("vit-s16", "detector")
    with pytest.raises(UnknownModel, match="known: yolo11n, yolo11s, yolo11m, yolo11n-int8-320"):
        resolve("yolo12n", "detector")
    with pytest.raises(ModelFileNotFound, match=r"missing\.onnx"):
        resolve(tmp_path / "missing.onnx")
    assert is_model_name("vit-b16")
    assert not is_model_name("vit_b16")


def test_a_file_deleted_after_import_is_not_provisioned(store: ModelStore, tmp_path: Path) -> None:
    store.import_file(_file(tmp_path / "w.pt", b"w" * 10), "yolo11m")
    (store.root / "ultralytics--assets" / "yolo11m.pt").unlink()
    assert store.status(store.entry("yolo11m")).state == "missing"
    with pytest.raises(ModelNotProvisioned):
        resolve("yolo11m")


@pytest.mark.realdata
def test_the_teams_real_files_import_and_verify(store: ModelStore, shared_data: Path) -> None:
    weights = shared_data / "weights"
    files = {
        "yolo11n-int8-320": weights / "yolo11n_int8_coco_320.onnx",
        "mobilenetv2_100_coral": weights
        / "mobilenet_v2_imagenet"
        / "mobilenetv2_100_coral_dequant.safetensors",
        "osnet_x0_25_msmt17": weights / "osnet_x0_25_msmt17" / "osnet_x0_25_msmt17.onnx",
    }
    for name, path in files.items():
        record = store.import_file(path, name)
        assert record.sha256 == store.entry(name).sha256
        assert record.size == store.entry(name).size
    verified = {s.entry.name: s.state for s in store.statuses(files, rehash=True)}
    assert verified == dict.fromkeys(files, "hash ok")


def test_an_open_clip_tag_finds_its_pulled_file(store: ModelStore, tmp_path: Path) -> None:
    """`--encoder open_clip:ViT-B-32:laion2b_s34b_b79k` loads the file `semcom models pull
    clip-vit-b32-image` provisioned, not only the Hugging Face cache."""
    from shared.open_clip_encoder import provisioned_file

    assert provisioned_file("ViT-B-32", "laion2b_s34b_b79k") is None  # not provisioned yet
    store.import_file(_file(tmp_path / "clip.safetensors", b"clip" * 64), "clip-vit-b32-image")
    found = provisioned_file("ViT-B-32", "laion2b_s34b_b79k")
    assert found is not None
    assert found.read_bytes() == b"clip" * 64
    assert provisioned_file("ViT-B-32", "openai") is None  # no manifest entry for that tag
