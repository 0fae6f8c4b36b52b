"""Model provisioning: the shipped manifest, the models directory and name resolution.

Public API (everything else in this package is internal)::

    resolve(name_or_path, kind=None, *, store=None, check_hash=True) -> Resolved
    is_model_name(value, manifest=None) -> bool
    Resolved(path, entry, sha256)
    load_manifest(path=None) -> Manifest;  Manifest.get(name) / .names(kind) / iteration
    ModelEntry (name, kind, family, library_id, pretrained_tag, file, licence, dim,
                preprocessing, model_kwargs, download, sha256, size, notes, import_only)
    Preprocessing (input_size (h, w) px, mean, std, interpolation, crop_pct, resize)
    ModelStore(root=None, manifest=None): path_for, read_lock, record, import_file, status(es)
    default_models_dir() ($SEMCOM_MODELS_DIR or the user cache folder), sha256_file(path)
    errors: ModelError and its children (see shared.models.errors)

Downloading (``semcom models pull``) lives in the CLI package: deployed daemons only resolve,
they never go online.
"""

from __future__ import annotations

from shared.models.errors import (
    HubUnreachable,
    LockError,
    ManifestError,
    ModelError,
    ModelFileNotFound,
    ModelHashMismatch,
    ModelKindMismatch,
    ModelNotProvisioned,
    PullError,
    UnknownModel,
)
from shared.models.manifest import (
    Download,
    Kind,
    Manifest,
    ModelEntry,
    Preprocessing,
    load_manifest,
    parse_manifest,
)
from shared.models.resolve import Resolved, is_model_name, resolve
from shared.models.store import (
    ENV_MODELS_DIR,
    LOCK_NAME,
    EntryStatus,
    LockRecord,
    ModelStore,
    State,
    default_models_dir,
    sha256_file,
)

__all__ = [
    "ENV_MODELS_DIR",
    "LOCK_NAME",
    "Download",
    "EntryStatus",
    "HubUnreachable",
    "Kind",
    "LockError",
    "LockRecord",
    "ManifestError",
    "Manifest",
    "ModelEntry",
    "ModelError",
    "ModelFileNotFound",
    "ModelHashMismatch",
    "ModelKindMismatch",
    "ModelNotProvisioned",
    "ModelStore",
    "Preprocessing",
    "PullError",
    "Resolved",
    "State",
    "UnknownModel",
    "default_models_dir",
    "is_model_name",
    "load_manifest",
    "parse_manifest",
    "resolve",
    "sha256_file",
]
