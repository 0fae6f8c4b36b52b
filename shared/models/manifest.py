"""The model manifest: every model semcom knows by name, and what it takes to use it.

The manifest ships inside the package (``shared/models/manifest.yaml``, read with
:mod:`importlib.resources`) so an installed semcom and its code always agree on names, files and
hashes. Like timm's pretrained configs, the preprocessing contract travels with the weights: the
code that loads an entry reads input size, mean, std and interpolation from it, never from
constants of its own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

import yaml

from shared.models.errors import ManifestError

Kind = Literal["detector", "encoder", "text_encoder", "reid"]
Family = Literal["ultralytics", "timm", "open_clip", "onnx"]
Hub = Literal["ultralytics", "huggingface"]

KINDS: Final = cast(tuple[str, ...], get_args(Kind))
FAMILIES: Final = cast(tuple[str, ...], get_args(Family))
HUBS: Final = cast(tuple[str, ...], get_args(Hub))
MANIFEST_VERSION: Final = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """How an image goes into the model.

    ``input_size`` is (height, width) in px; ``mean`` and ``std`` apply per RGB channel to pixels
    scaled to 0..1; ``resize`` is how the image reaches ``input_size`` (``letterbox``: YOLO's
    padded resize; ``center_crop``: resize the short side to ``input / crop_pct`` then crop;
    ``shortest``: OpenCLIP's resize of the short side then centre crop; ``squash``: plain resize).
    """

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    crop_pct: float | None = None
    resize: str = "squash"


@dataclass(frozen=True, slots=True)
class Download:
    """Where a model is pulled from: an ultralytics release asset or a Hugging Face repo file.

    ``revision`` pins a Hugging Face commit (None: the repo's main branch, whose commit is then
    recorded in the lock file at pull time).
    """

    hub: Hub
    repo: str
    revision: str | None = None


@dataclass(frozen=True, slots=True)
class ManifestCodebook:
    """A PQ codebook that ships with an encoder (fitted on generic crops): its file, next to the
    model's in the models directory, and the content hash it must have
    (:attr:`shared.pq.PQCodec.content_hash`, hex)."""

    file: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One named model; ``download`` None means import only (no public download)."""

    name: str
    kind: Kind
    family: Family
    library_id: str  # ultralytics asset, timm model name, open_clip architecture, ONNX file
    file: str  # the file name inside the models directory
    licence: str
    dim: int | None  # embedding dimension; None for detectors
    preprocessing: Preprocessing | None
    download: Download | None
    sha256: str | None = None  # known hash of the file; None: recorded at pull time
    size: int | None = None  # bytes, where known
    pretrained_tag: str | None = None  # open_clip's pretrained tag (e.g. laion2b_s34b_b79k)
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)  # for the model factory
    notes: str = ""
    codebook: ManifestCodebook | None = None  # an encoder's codebook, used from its start

    @property
    def import_only(self) -> bool:
        return self.download is None

    @property
    def store_key(self) -> str:
        """The folder of this entry's file in the models directory.

        Entries that share a download (the two towers of a CLIP model) share the folder, so one
        pull or import provisions both.
        """
        if self.download is None:
            return self.name
        return self.download.repo.replace("/", "--")

    def to_dict(self) -> dict[str, Any]:
        """The manifest facts as plain JSON-able data (``semcom models list --json``)."""
        pre = self.preprocessing
        return {
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "library_id": self.library_id,
            "pretrained_tag": self.pretrained_tag,
            "file": self.file,
            "licence": self.licence,
            "dim": self.dim,
            "preprocessing": None
            if pre is None
            else {
                "input_size": list(pre.input_size),
                "mean": list(pre.mean),
                "std": list(pre.std),
                "interpolation": pre.interpolation,
                "crop_pct": pre.crop_pct,
                "resize": pre.resize,
            },
            "model_kwargs": dict(self.model_kwargs),
            "download": None
            if self.download is None
            else {
                "hub": self.download.hub,
                "repo": self.download.repo,
                "revision": self.download.revision,
            },
            "import_only": self.import_only,
            "sha256": self.sha256,
            "size": self.size,
            "notes": self.notes,
            "codebook": None
            if self.codebook is None
            else {"file": self.codebook.file, "content_hash": self.codebook.content_hash},
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    """The entries by name, in manifest order."""

    entries: Mapping[str, ModelEntry]
    source: str

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Any:
        return iter(self.entries.values())

    def get(self, name: str) -> ModelEntry | None:
        return self.entries.get(name)

    def names(self, kind: str | None = None) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries.values() if kind is None or e.kind == kind)

    def sharing_file(self, entry: ModelEntry) -> tuple[ModelEntry, ...]:
        """``entry`` and every other entry stored at the same file (CLIP's two towers)."""
        return tuple(
            e
            for e in self.entries.values()
            if (e.store_key, e.file) == (entry.store_key, entry.file)
        )


def load_manifest(path: Path | None = None) -> Manifest:
    """The shipped manifest, or the one at ``path``; :class:`ManifestError` if it is invalid."""
    return _shipped() if path is None else _load(path)


@functools.cache
def _shipped() -> Manifest:
    return _load(None)


def _load(path: Path | None) -> Manifest:
    if path is None:
        source = "shared/models/manifest.yaml"
        text = resources.files("shared.models").joinpath("manifest.yaml").read_text("utf-8")
    else:
        source = str(path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ManifestError(source, f"cannot read it: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(source, f"not valid YAML: {exc}") from None
    return parse_manifest(data, source)


def parse_manifest(data: object, source: str = "<manifest>") -> Manifest:
    """Validate manifest data (as loaded from YAML); unknown keys and bad values are refused."""
    top = _mapping(data, "the manifest", source)
    _keys(top, {"version", "models"}, set(), "the manifest", source)
    if top["version"] != MANIFEST_VERSION:
        raise ManifestError(
            source, f"version {top['version']!r} is not supported (expected {MANIFEST_VERSION})"
        )
    models = top["models"]
    if not isinstance(models, list):
        raise ManifestError(source, "'models' must be a list of entries")
    entries: dict[str, ModelEntry] = {}
    for i, raw in enumerate(models):
        entry = _entry(raw, f"models[{i}]", source)
        if entry.name in entries:
            raise ManifestError(source, f"models[{i}]: duplicate name {entry.name!r}")
        entries[entry.name] = entry
    return Manifest(entries, source)


_REQUIRED = {"name", "kind", "family", "library_id", "file", "licence", "dim", "preprocessing"}
_REQUIRED |= {"download", "sha256"}
_OPTIONAL = {"size", "pretrained_tag", "model_kwargs", "notes", "codebook"}


def _entry(raw: object, where: str, source: str) -> ModelEntry:
    d = _mapping(raw, where, source)
    _keys(d, _REQUIRED, _OPTIONAL, where, source)
    name = _str(d["name"], f"{where}.name", source)
    where = f"{where} ({name})"
    if not _NAME.match(name):
        raise ManifestError(source, f"{where}: name must be 1-64 of A-Z a-z 0-9 . _ -")
    kind = _choice(d["kind"], KINDS, f"{where}.kind", source)
    family = _choice(d["family"], FAMILIES, f"{where}.family", source)
    file = _str(d["file"], f"{where}.file", source)
    if Path(file).name != file or file in (".", ".."):
        raise ManifestError(source, f"{where}.file must be a plain file name, got {file!r}")
    dim = d["dim"]
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
        raise ManifestError(source, f"{where}.dim must be a positive integer or null")
    if kind == "detector" and dim is not None:
        raise ManifestError(source, f"{where}.dim must be null for a detector")
    if kind != "detector" and dim is None:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ManifestError(source, f"{where}.dim is required for {article} {kind}")
    sha = d["sha256"]
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha)):
        raise ManifestError(source, f"{where}.sha256 must be 64 lower-case hex digits or null")
    if d["download"] is None and sha is None:
        raise ManifestError(source, f"{where}: an import-only entry needs its sha256")
    size = d.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise ManifestError(source, f"{where}.size must be a positive integer (bytes)")
    kwargs = d.get("model_kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ManifestError(source, f"{where}.model_kwargs must be a mapping")
    tag = d.get("pretrained_tag")
    if family == "open_clip" and not isinstance(tag, str):
        raise ManifestError(source, f"{where}.pretrained_tag is required for open_clip")
    return ModelEntry(
        name=name,
        kind=cast(Kind, kind),
        family=cast(Family, family),
        library_id=_str(d["library_id"], f"{where}.library_id", source),
        file=file,
        licence=_str(d["licence"], f"{where}.licence", source),
        dim=dim,
        preprocessing=_preprocessing(d["preprocessing"], f"{where}.preprocessing", source),
        download=_download(d["download"], f"{where}.download", source),
        sha256=sha,
        size=size,
        pretrained_tag=tag if isinstance(tag, str) else None,
        model_kwargs=dict(kwargs),
        notes=str(d.get("notes") or ""),
        codebook=_codebook(d.get("codebook"), kind, f"{where}.codebook", source),
    )


def _codebook(raw: object, kind: str, where: str, source: str) -> ManifestCodebook | None:
    if raw is None:
        return None
    if kind != "encoder":
        raise ManifestError(source, f"{where}: only an encoder has a codebook")
    d = _mapping(raw, where, source)
    _keys(d, {"file", "content_hash"}, set(), where, source)
    file = _str(d["file"], f"{where}.file", source)
    if Path(file).name != file or not file.endswith(".npz"):
        raise ManifestError(source, f"{where}.file must be a plain .npz file name, got {file!r}")
    digest = d["content_hash"]
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise ManifestError(source, f"{where}.content_hash must be 64 lower-case hex digits")
    return ManifestCodebook(file, digest)


def _preprocessing(raw: object, where: str, source: str) -> Preprocessing | None:
    if raw is None:
        return None
    d = _mapping(raw, where, source)
    _keys(d, {"input_size", "mean", "std"}, {"interpolation", "crop_pct", "resize"}, where, source)
    size = d["input_size"]
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ManifestError(source, f"{where}.input_size must be [height, width] in px")
    mean = _triple(d["mean"], f"{where}.mean", source)
    std = _triple(d["std"], f"{where}.std", source)
    if any(v <= 0 for v in std):
        raise ManifestError(source, f"{where}.std must be positive")
    crop = d.get("crop_pct")
    if crop is not None and (not isinstance(crop, (int, float)) or not 0 < crop <= 1):
        raise ManifestError(source, f"{where}.crop_pct must be in (0, 1]")
    return Preprocessing(
        input_size=(size[0], size[1]),
        mean=mean,
        std=std,
        interpolation=_str(d.get("interpolation", "bilinear"), f"{where}.interpolation", source),
        crop_pct=None if crop is None else float(crop),
        resize=_choice(
            d.get("resize", "squash"),
            ("letterbox", "center_crop", "shortest", "squash"),
            f"{where}.resize",
            source,
        ),
    )


def _download(raw: object, where: str, source: str) -> Download | None:
    if raw is None:
        return None
    d = _mapping(raw, where, source)
    _keys(d, {"hub", "repo"}, {"revision"}, where, source)
    revision = d.get("revision")
    if revision is not None and not isinstance(revision, str):
        raise ManifestError(source, f"{where}.revision must be a string or null")
    return Download(
        hub=cast(Hub, _choice(d["hub"], HUBS, f"{where}.hub", source)),
        repo=_str(d["repo"], f"{where}.repo", source),
        revision=revision,
    )


def _mapping(raw: object, where: str, source: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ManifestError(source, f"{where} must be a mapping")
    return raw


def _keys(d: dict[str, Any], required: set[str], optional: set[str], where: str, src: str) -> None:
    missing = sorted(required - d.keys())
    unknown = sorted(d.keys() - required - optional)
    if missing:
        raise ManifestError(src, f"{where}: missing {', '.join(missing)}")
    if unknown:
        raise ManifestError(src, f"{where}: unknown key(s) {', '.join(map(str, unknown))}")


def _str(value: object, where: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ManifestError(source, f"{where} must be a non-empty string")
    return value


def _choice(value: object, choices: tuple[str, ...], where: str, source: str) -> str:
    if value not in choices:
        raise ManifestError(source, f"{where} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _triple(value: object, where: str, source: str) -> tuple[float, float, float]:
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ManifestError(source, f"{where} must be three numbers (R, G, B)")
    return (float(value[0]), float(value[1]), float(value[2]))
