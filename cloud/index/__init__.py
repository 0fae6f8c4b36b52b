"""Vector indexes of the cloud: one protocol, faiss embedded, Qdrant for scale-out.

See :mod:`cloud.index.base` for the contract, :mod:`cloud.index.faiss_index` (the default) and
:mod:`cloud.index.qdrant_index`. Backends load lazily through :func:`open_index`.
"""

from __future__ import annotations

from cloud.index.base import Hit, IndexKind, IndexSettings, SearchFilter, VectorIndex
from cloud.index.errors import (
    BackendUnavailable,
    DimensionMismatch,
    IndexClosed,
    IndexProblem,
    IndexStorageError,
    InvalidBatch,
    InvalidSettings,
)
from cloud.index.factory import open_index

__all__ = [
    "BackendUnavailable",
    "DimensionMismatch",
    "Hit",
    "IndexClosed",
    "IndexKind",
    "IndexProblem",
    "IndexSettings",
    "IndexStorageError",
    "InvalidBatch",
    "InvalidSettings",
    "SearchFilter",
    "VectorIndex",
    "open_index",
]
