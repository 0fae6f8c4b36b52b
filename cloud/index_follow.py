"""Following the catalog: vectors stored by other replicas reach this replica's index.

Each cloud replica keeps its own index (faiss files, or Qdrant's local mode) and its ingest
writer hands it only what *this* replica stored. With several replicas on one PostgreSQL,
:class:`CatalogFollower` reads, every ``follow_s``, the catalog's embedding ids it has not
seen, and the indexer adds them (:mod:`cloud.indexer`).

Ids are not commit-ordered (PostgreSQL sequences hand ids out at insert time, and the
transaction that got a lower id may commit later), so a high-water mark alone would skip
ids. Per space, the follower reads every id above a *floor* and remembers the ids above it
that it has seen (read here, or handed over by this replica's writer); the floor trails the
newest id seen by ``grace_s``: an id allocated before that and committed later than
``grace_s`` after it is left to the indexer's periodic reconcile. The read is one range scan
of the (space, id) index, about ``grace_s`` times the ingest rate ids.

Staleness: a vector committed by another replica is searchable here once a poll that began
after its commit has been added: within ``follow_s`` plus one poll's duration (reading,
decoding and adding what it found), for commits that land within ``grace_s`` of their id.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from cloud.catalog_vectors import CatalogVectors
from cloud.project import NewVectors
from cloud.schema import embeddings


@dataclass
class _Cursor:
    floor: int = 0  # every id at or below was read (or is past the grace period)
    seen: set[int] = field(default_factory=set)  # ids above the floor already indexed
    marks: deque[tuple[float, int]] = field(default_factory=deque)  # (when, newest id seen)


class CatalogFollower:
    """Which catalog embeddings this replica's index has not seen yet (used by one thread)."""

    def __init__(
        self,
        catalog: CatalogVectors,
        grace_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.grace_s = grace_s
        self.clock = clock
        self._cursors: dict[str, _Cursor] = {}

    def start_at(self, space: str, newest: int) -> None:
        """The index holds the catalog's ids up to ``newest`` (a reconcile just read them):
        follow from there, unless this space is followed already."""
        if space not in self._cursors:
            cursor = _Cursor(floor=newest)
            cursor.marks.append((self.clock(), newest))
            self._cursors[space] = cursor

    def saw(self, batches: list[NewVectors]) -> None:
        """Vectors this replica's writer handed over: not to be read back."""
        for batch in batches:
            cursor = self._cursors.get(batch.space)
            if cursor is not None:
                cursor.seen.update(i for i in batch.ids if i > cursor.floor)

    def poll(self) -> list[NewVectors]:
        """The catalog's embeddings this index has not seen, decoded (blocking)."""
        out = []
        for space in self.catalog.spaces():
            cursor = self._cursors.setdefault(space.name, _Cursor())
            self._advance(cursor)
            with self.catalog.engine.connect() as conn:
                ids = np.fromiter(
                    conn.execute(
                        select(embeddings.c.detection_id)
                        .where(
                            embeddings.c.space_id == space.id,
                            embeddings.c.detection_id > cursor.floor,
                        )
                        .order_by(embeddings.c.detection_id)
                    ).scalars(),
                    np.int64,
                )
            if len(ids):
                cursor.marks.append((self.clock(), int(ids[-1])))
            new = np.array([i for i in ids.tolist() if i not in cursor.seen], np.int64)
            if len(new):
                batch = self.catalog.read(space, new)
                cursor.seen.update(new.tolist())
                if len(batch):
                    out.append(batch)
        return out

    def _advance(self, cursor: _Cursor) -> None:
        """Raise the floor to the newest id seen ``grace_s`` ago; forget ids below it."""
        cut = self.clock() - self.grace_s
        floor = cursor.floor
        while cursor.marks and cursor.marks[0][0] <= cut:
            floor = max(floor, cursor.marks.popleft()[1])
        if floor != cursor.floor:
            cursor.floor = floor
            cursor.seen = {i for i in cursor.seen if i > floor}
