"""Per-position storage of the faiss backend: ids, attributes, the vectors, and filtering.

The vectors live in a :class:`~cloud.index.vector_store.VectorStore` (float16, faiss), the
one copy of each vector the index keeps; scores computed from them differ from float32 scores
by about 1e-4. A grown copy of the columns shares the store (rows are only appended, by
:meth:`Columns.publish` under the index's write lock).

Rows are *positions* 0..n-1 in insertion order; a position is also the vector's id inside
faiss, so a faiss result maps back to a detection id by one array lookup. Ids mostly arrive in
increasing order, not always (see :mod:`cloud.index.batch`): an id is found by a binary search
over the running maximum of the ids (``id_max``; a row whose id is that maximum is *in order*),
and the few *late* rows, whose id is below an earlier row's, are kept aside sorted by id.
Arrays grow by half again when full (amortised O(1) appends). Removed rows stay as tombstones
(``alive`` false) until a compaction builds new columns without them.

Filters become :class:`Candidates`: a position range [lo, hi) plus, when not every position in
it matches, a boolean mask over the range. The time window is narrowed without a scan by two
monotone envelopes of the capture times: the running maximum ``ts_max[p] = max(ts[:p+1])``
and the suffix minimum ``ts_min[p] = min(ts[p:])``. Rows before the first p with
``ts_max[p] >= from`` are all older than ``from``; rows from the first p with
``ts_min[p] >= to`` on are all newer than ``to``: two binary searches. When capture times
arrive in order (the common case) the range is exact; late batches (an edge draining its
backlog) only widen it, and the mask settles the rest. The envelopes stay valid bounds after
removals and are recomputed by compaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cloud.index.base import SearchFilter
from cloud.index.batch import F32, I32, I64, Batch
from cloud.index.vector_store import VectorStore

BoolArray = NDArray[np.bool_]
U8 = NDArray[np.uint8]
F16 = NDArray[np.float16]

_MIN_CAPACITY = 1024
# Up to this many values, OR-ed comparisons beat np.isin, whose lookup-table path costs
# ~4-14 ms over 1M int32 rows whatever the values (numpy 2.4, two cores): 5 classes
# 0.6 vs 9 ms, 48 cameras 6.4 vs 14 ms (bench index's 50 % filter).
_EQUALITY_MAX = 48


@dataclass(frozen=True)
class Candidates:
    """Positions a filter admits: [lo, hi), restricted by ``mask`` (over the range) if set."""

    lo: int
    hi: int
    mask: BoolArray | None
    count: int

    def positions(self) -> I64:
        if self.mask is None:
            return np.arange(self.lo, self.hi, dtype=np.int64)
        return np.flatnonzero(self.mask).astype(np.int64) + self.lo

    def bitmap(self, n: int) -> U8:
        """A little-endian bitmap over positions [0, n), the layout of faiss IDSelectorBitmap."""
        bits = np.zeros((n + 7) // 8, dtype=np.uint8)
        start = self.lo - self.lo % 8
        inside = np.zeros(self.hi - start, dtype=np.bool_)
        inside[self.lo - start :] = True if self.mask is None else self.mask
        packed = np.packbits(inside, bitorder="little")
        bits[start // 8 : start // 8 + len(packed)] = packed
        return bits


NOTHING = Candidates(0, 0, None, 0)


def _member(column: I32, values: tuple[int, ...]) -> BoolArray:
    unique = sorted(set(values))
    if len(unique) > _EQUALITY_MAX:
        return np.asarray(np.isin(column, np.asarray(unique, dtype=column.dtype)), np.bool_)
    mask = np.asarray(column == unique[0], np.bool_)
    for v in unique[1:]:
        mask |= column == v
    return mask


class Columns:
    """The rows of one index; see the module docstring. Not thread-safe by itself."""

    def __init__(self, dim: int, capacity: int = 0, store: VectorStore | None = None) -> None:
        self.dim = dim
        self.store = store if store is not None else VectorStore(dim)
        self.n = 0
        self.dead = 0
        self._ids = np.zeros(capacity, np.int64)
        self._cameras = np.zeros(capacity, np.int32)
        self._classes = np.zeros(capacity, np.int32)
        self._ts = np.zeros(capacity, np.int64)
        self._alive = np.zeros(capacity, np.bool_)
        self._ts_max = np.zeros(capacity, np.int64)
        self._ts_min = np.zeros(capacity, np.int64)
        self._id_max = np.zeros(capacity, np.int64)
        # Late rows (id below an earlier row's): their ids, sorted, and their positions.
        self._late_ids = np.zeros(0, np.int64)
        self._late_pos = np.zeros(0, np.int64)

    @classmethod
    def from_arrays(
        cls,
        ids: I64,
        cameras: I32,
        classes: I32,
        ts: I64,
        alive: BoolArray,
        vectors: NDArray[np.floating],
    ) -> Columns:
        n, dim = vectors.shape
        out = cls(dim, max(n, _MIN_CAPACITY))
        out.n = n
        out.dead = int(n - np.count_nonzero(alive))
        out._ids[:n], out._cameras[:n], out._classes[:n] = ids, cameras, classes
        out._ts[:n], out._alive[:n] = ts, alive
        out.store.add(vectors)
        if n:
            out._ts_max[:n] = np.maximum.accumulate(ts)
            out._ts_min[:n] = np.minimum.accumulate(ts[::-1])[::-1]
            out._id_max[:n] = np.maximum.accumulate(ids)
            out._set_late(np.flatnonzero(out._ids[:n] != out._id_max[:n]).astype(np.int64))
        return out

    # ------------------------------------------------------------------ views of rows < n

    @property
    def ids(self) -> I64:
        return self._ids[: self.n]

    @property
    def cameras(self) -> I32:
        return self._cameras[: self.n]

    @property
    def classes(self) -> I32:
        return self._classes[: self.n]

    @property
    def ts(self) -> I64:
        return self._ts[: self.n]

    @property
    def alive(self) -> BoolArray:
        return self._alive[: self.n]

    @property
    def vectors(self) -> F16:
        """Rows 0..n-1 of the store, float16, without a copy: valid until the next publish."""
        return self.store.view(self.n)

    @property
    def max_id(self) -> int:
        """The highest id of any row (0: none)."""
        return int(self._id_max[self.n - 1]) if self.n else 0

    @property
    def late(self) -> int:
        """Rows whose id is below an earlier row's (added out of order)."""
        return len(self._late_pos)

    @property
    def live(self) -> int:
        return self.n - self.dead

    @property
    def nbytes(self) -> int:
        arrays = (self._ids, self._cameras, self._classes, self._ts, self._alive)
        envelopes = (self._ts_max, self._ts_min, self._id_max, self._late_ids, self._late_pos)
        return self.store.nbytes + sum(a.nbytes for a in (*arrays, *envelopes))

    # ------------------------------------------------------------------ growth

    def reserved(self, extra: int) -> Columns:
        """Self if ``extra`` more rows fit, else a larger copy (made while readers go on)."""
        needed = self.n + extra
        if needed <= len(self._ids):
            return self
        capacity = max(needed, len(self._ids) * 3 // 2, _MIN_CAPACITY)
        out = Columns(self.dim, capacity, self.store)
        out.n, out.dead = self.n, self.dead
        for name in ("_ids", "_cameras", "_classes", "_ts", "_alive"):
            getattr(out, name)[: self.n] = getattr(self, name)[: self.n]
        out._ts_max[: self.n] = self._ts_max[: self.n]
        out._ts_min[: self.n] = self._ts_min[: self.n]
        out._id_max[: self.n] = self._id_max[: self.n]
        out._late_ids, out._late_pos = self._late_ids, self._late_pos
        return out

    def write_tail(self, batch: Batch) -> None:
        """Fill rows n..n+m-1 but their vectors; invisible to readers until :meth:`publish`."""
        n, m = self.n, len(batch)
        rows = slice(n, n + m)
        self._ids[rows], self._cameras[rows], self._classes[rows] = (
            batch.ids,
            batch.cameras,
            batch.classes,
        )
        self._ts[rows], self._alive[rows] = batch.ts_us, True
        running = np.maximum.accumulate(batch.ts_us)
        self._ts_max[rows] = np.maximum(running, self._ts_max[n - 1]) if n else running
        self._ts_min[rows] = np.minimum.accumulate(batch.ts_us[::-1])[::-1]
        running_id = np.maximum.accumulate(batch.ids)
        self._id_max[rows] = np.maximum(running_id, self._id_max[n - 1]) if n else running_id

    def publish(self, vectors: F32 | F16) -> None:
        """Append the written tail's vectors to the store and make the tail visible (under the
        index's write lock)."""
        n, m = self.n, len(vectors)
        if len(self.store) != n:
            raise RuntimeError(f"vector store holds {len(self.store)} rows, columns {n}")
        self.store.add(vectors)
        if m and n:
            low = self._ts_min[n]
            # Earlier suffix minima above the new rows' minimum come down to it.
            start = int(np.searchsorted(self._ts_min[:n], low, side="right"))
            self._ts_min[start:n] = low
        late = np.flatnonzero(self._ids[n : n + m] != self._id_max[n : n + m])
        if len(late):
            self._set_late(np.concatenate((self._late_pos, late.astype(np.int64) + n)))
        self.n = n + m

    def compacted(self) -> Columns:
        """New columns of the live rows only, positions renumbered 0..live-1."""
        keep = np.flatnonzero(self.alive)
        return Columns.from_arrays(
            self.ids[keep],
            self.cameras[keep],
            self.classes[keep],
            self.ts[keep],
            np.ones(len(keep), np.bool_),
            self.vectors[keep],
        )

    # ------------------------------------------------------------------ removal

    def kill(self, positions: I64) -> None:
        self._alive[positions] = False
        self.dead += len(positions)

    def find(self, ids: I64) -> I64:
        """Positions of the live rows with these (sorted, unique) ids, in position order."""
        n = self.n
        if not n or not len(ids):
            return np.zeros(0, np.int64)
        # In-order rows: the first position whose running maximum reaches the id holds it.
        at = np.searchsorted(self._id_max[:n], ids)
        inside = at < n
        at, wanted = at[inside], ids[inside]
        found = at[(self._ids[at] == wanted) & self._alive[at]]
        if len(self._late_pos):
            late = self._late_pos[np.isin(self._late_ids, ids)]
            found = np.concatenate((found, late[self._alive[late]]))
            found.sort()
        return np.asarray(found, dtype=np.int64)

    def holds(self, ids: I64) -> BoolArray:
        """For each of these (sorted, unique) ids: is a live row keyed by it?"""
        held = np.zeros(len(ids), np.bool_)
        if not len(ids) or not self.n or int(ids[0]) > self.max_id:
            return held  # the common add: every id above what is stored
        return np.asarray(np.isin(ids, self._ids[self.find(ids)]), np.bool_)

    def live_ids(self) -> I64:
        """The ids of the live rows, sorted."""
        return np.sort(self.ids[self.alive])

    def _set_late(self, positions: I64) -> None:
        order = np.argsort(self._ids[positions], kind="stable")
        self._late_pos = np.ascontiguousarray(positions[order])
        self._late_ids = np.ascontiguousarray(self._ids[self._late_pos])

    def older_than(self, ts_us: int) -> I64:
        """Positions of the live rows captured before ``ts_us``."""
        hi = int(np.searchsorted(self._ts_min[: self.n], ts_us, side="left"))
        mask = (self._ts[:hi] < ts_us) & self._alive[:hi]
        return np.flatnonzero(mask).astype(np.int64)

    # ------------------------------------------------------------------ filtering

    def candidates(self, where: SearchFilter | None) -> Candidates:
        """The live positions matching ``where`` (all live positions for ``None``)."""
        n = self.n
        lo, hi = 0, n
        if where is not None and where.from_us is not None:
            lo = int(np.searchsorted(self._ts_max[:n], where.from_us, side="left"))
        if where is not None and where.to_us is not None:
            hi = int(np.searchsorted(self._ts_min[:n], where.to_us, side="left"))
        if hi <= lo:
            return NOTHING
        conditions: list[BoolArray] = []
        if where is not None:
            if where.cameras is not None:
                if not where.cameras:
                    return NOTHING
                conditions.append(_member(self._cameras[lo:hi], where.cameras))
            if where.classes is not None:
                if not where.classes:
                    return NOTHING
                conditions.append(_member(self._classes[lo:hi], where.classes))
            # The envelopes settle the window without a scan when capture times are in order.
            if where.from_us is not None and self._ts_min[lo] < where.from_us:
                conditions.append(self._ts[lo:hi] >= where.from_us)
            if where.to_us is not None and self._ts_max[hi - 1] >= where.to_us:
                conditions.append(self._ts[lo:hi] < where.to_us)
        if self.dead:
            conditions.append(self._alive[lo:hi])
        if not conditions:
            return Candidates(lo, hi, None, hi - lo)
        mask = conditions[0]
        for more in conditions[1:]:
            mask = mask & more
        count = int(np.count_nonzero(mask))
        if count == 0:
            return NOTHING
        return Candidates(lo, hi, None if count == hi - lo else mask, count)
