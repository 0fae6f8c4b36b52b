"""The error tree of the vector index; callers catch only these.

::

    IndexProblem                 base of every error raised by :mod:`cloud.index`
    ├── InvalidSettings          an :class:`IndexSettings` value out of range (field, reason)
    ├── DimensionMismatch        vectors of the wrong width for the space (expected, got, where)
    ├── InvalidBatch             an add/search/remove argument that breaks the contract (reason)
    ├── IndexStorageError        saved files missing, unreadable or of another space (path)
    ├── BackendUnavailable       the backend cannot be reached or refused a request (backend)
    └── IndexClosed              an operation after :meth:`close`
"""

from __future__ import annotations

from pathlib import Path


class IndexProblem(Exception):
    """Base of every error raised by :mod:`cloud.index` (not the builtin ``IndexError``)."""


class InvalidSettings(IndexProblem, ValueError):
    """A setting outside its valid range."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"index setting {field}: {reason}")


class DimensionMismatch(IndexProblem, ValueError):
    """Vectors whose width is not the index's ``dim`` (one index per embedding space)."""

    def __init__(self, space: str, expected: int, got: int, where: str) -> None:
        self.space = space
        self.expected = expected
        self.got = got
        self.where = where
        super().__init__(
            f"{where}: vectors of {got} dims given to the index of space {space!r}, "
            f"which holds {expected}-dim vectors"
        )


class InvalidBatch(IndexProblem, ValueError):
    """Arguments that break the contract: ragged arrays, NaN, zero vectors, k < 1, ..."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class IndexStorageError(IndexProblem):
    """Saved index files that cannot be used; the index can be rebuilt from the catalog."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"index storage {path}: {reason}")


class BackendUnavailable(IndexProblem):
    """The backend (a Qdrant server, say) cannot be reached or answered with an error."""

    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__(f"{backend}: {reason}")


class IndexClosed(IndexProblem):
    """The index was closed; open it again to use it."""

    def __init__(self, space: str) -> None:
        self.space = space
        super().__init__(f"the index of space {space!r} is closed")
