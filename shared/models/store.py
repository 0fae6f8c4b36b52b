"""The models directory: provisioned files and the lock file that records them.

Layout: ``<models dir>/<store key>/<file>`` (the store key is the Hugging Face or GitHub repo,
``org--name``, or the entry name for import-only files) and ``<models dir>/models.lock.json``,
which maps each provisioned manifest name to its file, sha256, size in bytes, source
(``pulled`` or ``imported``), origin (URL or original path), hub revision and time (UTC).

The directory is ``$SEMCOM_MODELS_DIR``, else the user cache folder (platformdirs), e.g.
``~/.cache/semcom/models`` on Linux. The lock is rewritten atomically (a temporary file then
``os.replace``), so a reader never sees half a lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal

import platformdirs

from shared.models.errors import LockError, ModelFileNotFound, ModelHashMismatch, UnknownModel
from shared.models.manifest import Manifest, ModelEntry, load_manifest

ENV_MODELS_DIR: Final = "SEMCOM_MODELS_DIR"
LOCK_NAME: Final = "models.lock.json"
LOCK_VERSION: Final = 1
_CHUNK: Final = 1 << 20  # bytes read per hashing step

Source = Literal["pulled", "imported"]
#: ``pulled`` / ``imported``: recorded and unchanged (size and mtime) since, not re-hashed;
#: ``hash ok`` / ``hash mismatch``: hashed just now against the manifest's sha256 (where known)
#: and the lock's.
State = Literal["missing", "pulled", "imported", "hash ok", "hash mismatch"]


def default_models_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$SEMCOM_MODELS_DIR``, else the per-user cache folder (``~/.cache/semcom/models``)."""
    env = os.environ if environ is None else environ
    given = env.get(ENV_MODELS_DIR)
    if given:
        return Path(given).expanduser()
    return Path(platformdirs.user_cache_dir("semcom", appauthor=False)) / "models"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (a 600 MB checkpoint takes about 1-2 s)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class LockRecord:
    """What the lock file says about one provisioned name."""

    file: str  # relative to the models directory
    sha256: str
    size: int  # bytes
    source: Source
    when: str  # ISO 8601, UTC
    origin: str  # the URL pulled from, or the path imported from
    revision: str | None = None  # the hub commit pulled, where the hub has one
    mtime_ns: int = 0  # of the file when recorded: an unchanged file is not re-hashed by list


@dataclass(frozen=True, slots=True)
class EntryStatus:
    """The state of one manifest entry in a models directory."""

    entry: ModelEntry
    state: State
    path: Path  # where its file is (or would be)
    record: LockRecord | None
    detail: str = ""
    actual_sha256: str | None = None  # set when the file was hashed for this status

    @property
    def ok(self) -> bool:
        return self.state in ("pulled", "imported", "hash ok")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.entry.to_dict(),
            "state": self.state,
            "detail": self.detail,
            "path": str(self.path),
            "lock": None if self.record is None else asdict(self.record),
            "actual_sha256": self.actual_sha256,
        }


class ModelStore:
    """One models directory and its lock, read against a manifest."""

    def __init__(self, root: Path | None = None, manifest: Manifest | None = None) -> None:
        self.root = (root or default_models_dir()).expanduser()
        self.manifest = manifest or load_manifest()
        self.lock_path = self.root / LOCK_NAME

    def entry(self, name: str) -> ModelEntry:
        """The manifest entry ``name``, or :class:`UnknownModel`."""
        found = self.manifest.get(name)
        if found is None:
            raise UnknownModel(name, None, self.manifest.names())
        return found

    def path_for(self, entry: ModelEntry) -> Path:
        return self.root / entry.store_key / entry.file

    # ------------------------------------------------------------------ lock file

    def read_lock(self) -> dict[str, LockRecord]:
        """The lock's records by name ({} when there is no lock yet)."""
        try:
            text = self.lock_path.read_text("utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LockError(self.lock_path, f"cannot read it: {exc.strerror}") from None
        try:
            data = json.loads(text)
            if data.get("version") != LOCK_VERSION:
                raise ValueError(f"version {data.get('version')!r} is not {LOCK_VERSION}")
            return {name: LockRecord(**raw) for name, raw in data["models"].items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise LockError(
                self.lock_path, f"not a valid lock file ({exc}); delete it and import or pull again"
            ) from None

    def _write_lock(self, records: Mapping[str, LockRecord]) -> None:
        data = {
            "version": LOCK_VERSION,
            "models": {name: asdict(records[name]) for name in sorted(records)},
        }
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".lock-", dir=self.root)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
            os.replace(tmp, self.lock_path)
        except OSError as exc:
            raise LockError(self.lock_path, f"cannot write it: {exc.strerror}") from None

    def record(
        self,
        entry: ModelEntry,
        *,
        source: Source,
        origin: str,
        revision: str | None = None,
        sha256: str | None = None,
    ) -> LockRecord:
        """Record the file now at :meth:`path_for` (for ``entry`` and entries sharing it).

        A file whose sha256 differs from the manifest's known hash is refused (and not recorded).
        """
        path = self.path_for(entry)
        actual = sha256 or sha256_file(path)
        self.check_manifest_hash(entry, path, actual, todo="it was not recorded")
        stat = path.stat()
        record = LockRecord(
            file=path.relative_to(self.root).as_posix(),
            sha256=actual,
            size=stat.st_size,
            source=source,
            when=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            origin=origin,
            revision=revision,
            mtime_ns=stat.st_mtime_ns,
        )
        records = self.read_lock()
        for sibling in self.manifest.sharing_file(entry):
            records[sibling.name] = record
        self._write_lock(records)
        return record

    @staticmethod
    def check_manifest_hash(entry: ModelEntry, path: Path, actual: str, *, todo: str) -> None:
        if entry.sha256 is not None and actual != entry.sha256:
            raise ModelHashMismatch(
                entry.name,
                path,
                expected=entry.sha256,
                actual=actual,
                against="manifest",
                todo=f"this is not the file {entry.name!r} names ({todo})",
            )

    # ------------------------------------------------------------------ import

    def import_file(self, src: Path, name: str) -> LockRecord:
        """Copy ``src`` in as ``name`` (for air-gapped sites); the hash is checked first."""
        entry = self.entry(name)
        src = src.expanduser()
        if not src.is_file():
            raise ModelFileNotFound(src, f"give the path of the copied file of {name!r}")
        actual = sha256_file(src)
        self.check_manifest_hash(entry, src, actual, todo="nothing was imported")
        dest = self.path_for(entry)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not (dest.exists() and dest.resolve() == src.resolve()):
            fd, tmp = tempfile.mkstemp(prefix=f".{entry.file}.", dir=dest.parent)
            os.close(fd)
            try:
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
            except OSError:
                Path(tmp).unlink(missing_ok=True)
                raise
        return self.record(entry, source="imported", origin=str(src.resolve()), sha256=actual)

    # ------------------------------------------------------------------ states

    def status(self, entry: ModelEntry, *, rehash: bool = False) -> EntryStatus:
        """The entry's state; the file is hashed when ``rehash`` or when it changed since."""
        path = self.path_for(entry)
        record = self.read_lock().get(entry.name)
        return self._status(entry, path, record, rehash=rehash)

    def statuses(
        self, names: Iterable[str] | None = None, *, rehash: bool = False
    ) -> list[EntryStatus]:
        """Every manifest entry's state (or those named), in manifest order."""
        records = self.read_lock()
        entries = [self.entry(n) for n in names] if names is not None else list(self.manifest)
        return [
            self._status(e, self.path_for(e), records.get(e.name), rehash=rehash) for e in entries
        ]

    def _status(
        self, entry: ModelEntry, path: Path, record: LockRecord | None, *, rehash: bool
    ) -> EntryStatus:
        if record is None:
            detail = (
                "a file is there but not recorded: import it with `semcom models import`"
                if path.is_file()
                else "not provisioned"
            )
            return EntryStatus(entry, "missing", path, None, detail)
        recorded = self.root / record.file
        if not recorded.is_file():
            return EntryStatus(entry, "missing", recorded, record, "recorded, but the file is gone")
        stat = recorded.stat()
        if not rehash and (stat.st_size, stat.st_mtime_ns) == (record.size, record.mtime_ns):
            return EntryStatus(entry, record.source, recorded, record, "unchanged since recorded")
        actual = sha256_file(recorded)
        for against, expected in (("manifest", entry.sha256), ("lock", record.sha256)):
            if expected is not None and actual != expected:
                detail = f"sha256 {actual} differs from the {against}'s {expected}"
                return EntryStatus(entry, "hash mismatch", recorded, record, detail, actual)
        return EntryStatus(entry, "hash ok", recorded, record, f"sha256 {actual}", actual)
