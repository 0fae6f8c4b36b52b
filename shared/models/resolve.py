"""Name resolution: what the rest of the code calls to turn a config value into a model file.

A config value naming a model is either a path or a manifest name::

    resolve("yolo11n", "detector")          # the pulled file, hash-checked against the lock
    resolve("/opt/models/det.onnx")         # an existing file: used as is, entry None
    resolve("vit-s16", "encoder").entry     # library id, model_kwargs, preprocessing, dim

Resolution never downloads: a name that is not provisioned raises
:class:`~shared.models.errors.ModelNotProvisioned`, whose message says which
``semcom models pull`` / ``import`` to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.models.errors import (
    ModelFileNotFound,
    ModelHashMismatch,
    ModelKindMismatch,
    ModelNotProvisioned,
    UnknownModel,
)
from shared.models.manifest import Kind, Manifest, ModelEntry, load_manifest
from shared.models.store import ModelStore, sha256_file


@dataclass(frozen=True, slots=True)
class Resolved:
    """A model file ready to load.

    ``entry`` is its manifest entry (None for a plain path given by the user), carrying the
    library id, ``model_kwargs``, preprocessing and dimension; ``sha256`` is the hash the file
    was checked against (None for a plain path).
    """

    path: Path
    entry: ModelEntry | None
    sha256: str | None = None


def is_model_name(value: str | Path, manifest: Manifest | None = None) -> bool:
    """Whether ``value`` is a manifest name (and not an existing file of that name)."""
    text = str(value)
    return text in (manifest or load_manifest()) and not Path(text).expanduser().is_file()


def resolve(
    name_or_path: str | Path,
    kind: Kind | tuple[Kind, ...] | None = None,
    *,
    store: ModelStore | None = None,
    check_hash: bool = True,
) -> Resolved:
    """The file for a manifest name or a path (see the module docstring).

    ``kind`` (one kind or several) refuses a name of another kind (:class:`ModelKindMismatch`).
    With ``check_hash`` the file is hashed and compared with the manifest's sha256 (where known)
    and the lock's (:class:`ModelHashMismatch`); without it only its size is compared.
    ``store`` defaults to the models directory of ``$SEMCOM_MODELS_DIR`` (or the user cache)
    and the shipped manifest.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return Resolved(path, None)
    store = store or ModelStore()
    kinds = (kind,) if isinstance(kind, str) else kind
    entry = store.manifest.get(text)
    if entry is None:
        if path.suffix or len(path.parts) > 1:
            raise ModelFileNotFound(
                path, "give an existing file or a model name from `semcom models list`"
            )
        known = tuple(e.name for e in store.manifest if not kinds or e.kind in kinds)
        raise UnknownModel(text, "/".join(kinds) if kinds else None, known)
    if kinds and entry.kind not in kinds:
        raise ModelKindMismatch(entry.name, entry.kind, " or ".join(kinds))
    record = store.read_lock().get(entry.name)
    file = store.root / record.file if record is not None else store.path_for(entry)
    if record is None or not file.is_file():
        raise ModelNotProvisioned(entry.name, store.root, import_only=entry.import_only)
    todo = (
        f"run `semcom models verify`, then pull or import {entry.name!r} again"
        if not entry.import_only
        else f"import {entry.name!r} again from a good copy"
    )
    if check_hash:
        actual = sha256_file(file)
        for against, expected in (("manifest", entry.sha256), ("lock", record.sha256)):
            if expected is not None and actual != expected:
                raise ModelHashMismatch(
                    entry.name, file, expected=expected, actual=actual, against=against, todo=todo
                )
    elif file.stat().st_size != record.size:
        raise ModelHashMismatch(
            entry.name,
            file,
            expected=record.sha256,
            actual=f"unknown (size {file.stat().st_size} B, not {record.size} B)",
            against="lock",
            todo=todo,
        )
    return Resolved(file, entry, record.sha256)
