"""The error tree of model provisioning; each message says what is wrong and what to do.

Callers catch :class:`ModelError` (or one of its children) only::

    ModelError
    ├── ManifestError        the manifest (shipped or given) is not valid (source, reason)
    ├── LockError            the models directory's lock file cannot be read or written (path)
    ├── UnknownModel         neither a manifest name nor an existing file (name, kind, known)
    ├── ModelKindMismatch    a manifest name of another kind than asked for (name, kind, expected)
    ├── ModelNotProvisioned  a manifest name whose file is not in the models dir yet (name)
    ├── ModelFileNotFound    a file given by path that is not there (path)
    ├── ModelHashMismatch    a file whose sha256 is not the one expected (name, path, expected,
    │                        actual, against): tampered, truncated, or the wrong file
    └── PullError            a download that failed (name, reason)
        └── HubUnreachable   the model hub cannot be reached from here (name, host)
"""

from __future__ import annotations

from pathlib import Path


class ModelError(Exception):
    """Base of every model provisioning error."""


class ManifestError(ModelError):
    """A manifest that does not validate: ``source`` names the file, ``reason`` the problem."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"invalid model manifest {source}: {reason}")


class LockError(ModelError):
    """The lock file of the models directory is unreadable or cannot be written."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"model lock file {path}: {reason}")


class UnknownModel(ModelError):
    """A name that is not in the manifest and not an existing file."""

    def __init__(self, name: str, kind: str | None, known: tuple[str, ...]) -> None:
        self.name = name
        self.kind = kind
        self.known = known
        what = f"{kind} model" if kind else "model"
        super().__init__(
            f"unknown {what} {name!r}: it is neither an existing file nor a manifest name "
            f"(known: {', '.join(known) or 'none'}; see `semcom models list`)"
        )


class ModelKindMismatch(ModelError):
    """A manifest name used where another kind of model is expected (an encoder as detector)."""

    def __init__(self, name: str, kind: str, expected: str) -> None:
        self.name = name
        self.kind = kind
        self.expected = expected
        super().__init__(f"model {name!r} is of kind {kind}, not {expected}")


class ModelNotProvisioned(ModelError):
    """A manifest name whose file is not in the models directory yet."""

    def __init__(self, name: str, models_dir: Path, *, import_only: bool) -> None:
        self.name = name
        self.models_dir = models_dir
        self.import_only = import_only
        if import_only:
            todo = (
                f"it has no public download: copy the file to this machine and run "
                f"`semcom models import FILE --as {name}`"
            )
        else:
            todo = (
                f"run `semcom models pull {name}` (or, on a machine without internet, pull it "
                f"elsewhere and `semcom models import FILE --as {name}`)"
            )
        super().__init__(f"model {name!r} is not provisioned in {models_dir}: {todo}")


class ModelFileNotFound(ModelError):
    """A model file named by path (to use or to import) that does not exist."""

    def __init__(self, path: Path, hint: str) -> None:
        self.path = path
        self.hint = hint
        super().__init__(f"model file not found: {path}; {hint}")


class ModelHashMismatch(ModelError):
    """A file whose sha256 differs from the expected one (``against``: "manifest" or "lock")."""

    def __init__(
        self, name: str, path: Path, *, expected: str, actual: str, against: str, todo: str
    ) -> None:
        self.name = name
        self.path = path
        self.expected = expected
        self.actual = actual
        self.against = against
        super().__init__(
            f"hash mismatch for model {name!r} ({path}): sha256 {actual}, but the {against} "
            f"says {expected}; {todo}"
        )


class PullError(ModelError):
    """A download that failed; the message says why and what to do instead."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"cannot pull model {name!r}: {reason}")


class HubUnreachable(PullError):
    """The hub serving a model cannot be reached (offline, air-gapped, firewalled)."""

    def __init__(self, name: str, host: str, cause: str) -> None:
        self.host = host
        self.cause = cause
        super().__init__(
            name,
            f"cannot reach {host} ({cause}): on a connected machine run `semcom models pull "
            f"{name}` and copy the file, then `semcom models import FILE --as {name}`",
        )
