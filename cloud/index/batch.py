"""Argument checks shared by the backends: one batch contract, one error for each breach.

Vectors arrive unit-normalised or nearly so (decoded int8 / PQ codes are off by up to a few
per cent), and queries may be anything non-zero: both are normalised here, in float32, so every
score is a cosine. Ids are catalog detection ids and may come in any order: the writer's batches
are grouped by codec, an embedding can join a box row stored earlier, and PostgreSQL draws ids
from a sequence whose order is not the commit order. A batch is therefore sorted by id here and
an id given twice is kept once; the backends skip ids they hold (faiss by its columns, Qdrant
by insert-only upserts), so adding the same catalog rows again is harmless.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from cloud.index.errors import DimensionMismatch, InvalidBatch

F32 = NDArray[np.float32]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]

IntT = TypeVar("IntT", np.int32, np.int64)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Batch:
    """Checked add() arguments: unit float32 rows (C order) and one attribute row each."""

    ids: I64
    vectors: F32
    cameras: I32
    classes: I32
    ts_us: I64

    def __len__(self) -> int:
        return len(self.ids)


def unit_rows(x: F32, what: str) -> F32:
    """Rows scaled to unit length; zero or non-finite rows are errors (no direction)."""
    norms = np.linalg.norm(x, axis=1)
    bad = ~np.isfinite(norms) | (norms < 1e-12)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidBatch(f"{what} row {row} is zero, NaN or infinite: it has no direction")
    return np.ascontiguousarray(x / norms[:, None], dtype=np.float32)


def check_matrix(space: str, dim: int, x: NDArray[np.floating], where: str) -> F32:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise InvalidBatch(f"{where}: vectors must be a 2-d (n, {dim}) array, got {arr.shape}")
    if arr.shape[1] != dim:
        raise DimensionMismatch(space, dim, int(arr.shape[1]), where)
    return arr


def check_batch(
    space: str,
    dim: int,
    ids: NDArray[np.integer],
    vectors: NDArray[np.floating],
    cameras: NDArray[np.integer],
    classes: NDArray[np.integer],
    ts_us: NDArray[np.integer],
) -> Batch:
    """The add() contract: equal lengths, right width, finite non-zero vectors, ids >= 0.

    The rows come back sorted by id, each id once (its first row).
    """
    x = check_matrix(space, dim, vectors, "add")
    id_col = _column(ids, np.int64)
    cams, cls, ts = _column(cameras, np.int32), _column(classes, np.int32), _column(ts_us, np.int64)
    for name, col in (("ids", id_col), ("cameras", cams), ("classes", cls), ("ts_us", ts)):
        if len(col) != len(x):
            raise InvalidBatch(f"add: {len(x)} vectors but {len(col)} {name}")
    if len(id_col) and int(id_col.min()) < 0:
        # Catalog ids are positive; Qdrant's point ids are unsigned 64-bit integers.
        raise InvalidBatch(f"add: ids must not be negative, got {int(id_col.min())}")
    if len(id_col) > 1 and not bool((id_col[1:] > id_col[:-1]).all()):
        _, first = np.unique(id_col, return_index=True)  # sorted ids, first row of each
        id_col, x, cams, cls, ts = id_col[first], x[first], cams[first], cls[first], ts[first]
    return Batch(
        ids=id_col,
        vectors=unit_rows(x, "add: vector") if len(x) else x,
        cameras=cams,
        classes=cls,
        ts_us=ts,
    )


def _column(values: NDArray[np.integer], dtype: type[IntT]) -> NDArray[IntT]:
    return np.asarray(values).astype(dtype, copy=False).ravel()


def check_queries(space: str, dim: int, queries: NDArray[np.floating], k: int) -> F32:
    if k < 1:
        raise InvalidBatch(f"search: k must be at least 1, got {k}")
    q = check_matrix(space, dim, queries, "search")
    return unit_rows(q, "search: query") if len(q) else q


def check_ids(ids: NDArray[np.integer]) -> I64:
    """Sorted distinct ids to remove; negative ones are dropped (no index can hold them)."""
    unique = np.unique(np.asarray(ids).astype(np.int64, copy=False).ravel())
    return unique[unique >= 0]


def space_key(space: str) -> str:
    """A file / collection name for a space: readable, safe, and distinct for distinct spaces.

    Sanitising alone could map two spaces to one name ("a/b" and "a_b"), so a short hash of
    the exact space name is appended.
    """
    readable = _UNSAFE.sub("_", space).strip("._-")[:64] or "space"
    digest = hashlib.sha256(space.encode()).hexdigest()[:8]
    return f"{readable}-{digest}"
