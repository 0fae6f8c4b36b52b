"""The scale-out vector index: Qdrant, one collection per embedding space.

Each space gets its own collection (``semcom-<space key>``, see
:func:`cloud.index.batch.space_key`) of ``dim``-dim vectors with cosine distance, so vectors
of different encoders never meet; the collection's metadata records the space and dim, and
opening it for another dim is a :class:`~cloud.index.errors.DimensionMismatch`. A point's id
is the catalog detection id; its payload holds ``camera``, ``class``, ``ts_us`` (the filter
fields) and ``id`` (for ``last_id``, found by ordering on it). Adds are insert-only upserts
(``update_mode=insert_only``, Qdrant 1.17+): an id held keeps its first vector and attributes,
as the protocol says and faiss does, so re-adding catalog rows is harmless. ``last_id`` (the
highest id ever added) is the higher of the highest id held and the one :meth:`save` records
in the collection's metadata, so removing the highest id does not lower it after a reopen.
Filters become Qdrant payload conditions (``MatchAny`` for cameras and classes, ``Range`` for
the time window), which Qdrant's own planner answers by HNSW with filtering or by exact
search over a small candidate set.

Three ways to run it (:meth:`QdrantIndex.connect`):

- ``IndexSettings(backend="qdrant", qdrant_url="http://qdrant:6333")``: a Qdrant server or
  cluster; add ``qdrant_api_key`` when the server sets ``service.api_key`` (use https then),
  ``qdrant_timeout_s`` per request, ``qdrant_prefer_grpc`` (port ``qdrant_grpc_port``) for
  gRPC. New collections are created with ``shard_number = qdrant_shards``,
  ``replication_factor = qdrant_replicas`` and ``write_consistency_factor =
  qdrant_write_consistency``: on a cluster of N nodes, about 2 x N shards and a replication
  factor of 2 survive one node and spread the load; set them before the first vector
  arrives (they are fixed at creation; an existing collection made with others is used and
  the difference logged). A write consistency below the replication factor acknowledges a
  write before every replica has it, and a search served by a lagging replica may miss it
  for a moment. The payload fields get integer indexes with the collection (and an existing
  collection lacking them gets them at opening), see :mod:`cloud.index.qdrant_setup`.
  Tuning beyond that (on-disk vectors, quantisation, HNSW ``m``/``ef_construct``) is done on
  the collection with Qdrant's own API or console; this class only creates it when missing.
- ``path`` without a URL: qdrant-client's local mode, one storage directory per space under
  ``path`` (local mode locks its directory to one client). Exact search in Python: fine for
  tests and a few tens of thousands of vectors, slow beyond.
- neither: local mode in memory.

Local mode is not thread-safe, so calls are serialised there; a server client is used from
any thread. Client errors (REST, gRPC, local storage) become
:class:`~cloud.index.errors.BackendUnavailable` naming the server or directory.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from cloud.index.base import Hit, IndexSettings, SearchFilter
from cloud.index.batch import check_batch, check_ids, check_queries, space_key
from cloud.index.errors import IndexClosed
from cloud.index.qdrant_setup import CollectionSpec, backend_errors, backend_label, connect_client

logger = logging.getLogger(__name__)

UPSERT_CHUNK: Final = 1_024  # points per upsert request
SCROLL_PAGE: Final = 10_000  # ids per scroll request (ids())
LAST_ID_KEY: Final = "last_id"  # collection metadata: the highest id ever added (save())


def collection_name(space: str) -> str:
    return f"semcom-{space_key(space)}"


def to_filter(where: SearchFilter | None) -> models.Filter | None:
    """The Qdrant payload filter of ``where`` (None: no condition)."""
    if where is None or where.is_everything:
        return None
    must: list[models.Condition] = []
    if where.cameras is not None:
        must.append(
            models.FieldCondition(key="camera", match=models.MatchAny(any=list(where.cameras)))
        )
    if where.classes is not None:
        must.append(
            models.FieldCondition(key="class", match=models.MatchAny(any=list(where.classes)))
        )
    if where.from_us is not None or where.to_us is not None:
        window = models.Range(gte=where.from_us, lt=where.to_us)
        must.append(models.FieldCondition(key="ts_us", range=window))
    return models.Filter(must=must)


class QdrantIndex:
    """A :class:`~cloud.index.base.VectorIndex` on a Qdrant collection; see the module doc."""

    def __init__(
        self,
        client: QdrantClient,
        spec: CollectionSpec,
        *,
        server: bool,
        label: str = "qdrant",
        recreate: bool = False,
        owns_client: bool = True,
    ) -> None:
        self.space = spec.space
        self.dim = spec.dim
        self.collection = collection_name(spec.space)
        self._spec = spec
        self._client = client
        self._server = server
        self._label = label  # names the server or directory in errors
        self._owns_client = owns_client
        self._lock: AbstractContextManager[Any] = nullcontext() if server else threading.Lock()
        self._closed = False
        with self._lock, self._errors(f"opening collection {self.collection}"):
            if recreate and client.collection_exists(self.collection):
                client.delete_collection(self.collection)
            if client.collection_exists(self.collection):
                recorded = self._open_collection()
            else:
                spec.create(client, self.collection, server=server)
                recorded = 0
            self._last_id = max(recorded, self._highest_id())
            self._saved_last_id = recorded

    @classmethod
    def connect(cls, settings: IndexSettings, space: str, dim: int) -> QdrantIndex:
        """A client for the settings (server, local directory, or memory) and the index."""
        client = connect_client(settings, space)
        try:
            return cls(
                client,
                CollectionSpec.of(settings, space, dim),
                server=settings.qdrant_url is not None,
                label=backend_label(settings, space),
                recreate=settings.recreate,
            )
        except BaseException:
            client.close()
            raise

    # ------------------------------------------------------------------ VectorIndex

    def add(
        self,
        ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
        cameras: NDArray[np.int32],
        classes: NDArray[np.int32],
        ts_us: NDArray[np.int64],
    ) -> None:
        with self._lock, self._errors("add"):
            self._check_open()
            batch = check_batch(self.space, self.dim, ids, vectors, cameras, classes, ts_us)
            for start in range(0, len(batch), UPSERT_CHUNK):
                rows = slice(start, start + UPSERT_CHUNK)
                chunk_ids = batch.ids[rows].tolist()
                payloads = [
                    {"camera": cam, "class": cls, "ts_us": ts, "id": i}
                    for i, cam, cls, ts in zip(
                        chunk_ids,
                        batch.cameras[rows].tolist(),
                        batch.classes[rows].tolist(),
                        batch.ts_us[rows].tolist(),
                        strict=True,
                    )
                ]
                points = models.Batch(
                    ids=chunk_ids, vectors=batch.vectors[rows].tolist(), payloads=payloads
                )
                self._client.upsert(
                    self.collection,
                    points=points,
                    wait=True,
                    update_mode=models.UpdateMode.INSERT_ONLY,  # an id held keeps its row
                )
            if len(batch):
                self._last_id = max(self._last_id, int(batch.ids[-1]))

    def search(
        self, queries: NDArray[np.float32], k: int, where: SearchFilter | None = None
    ) -> list[list[Hit]]:
        q = check_queries(self.space, self.dim, queries, k)
        if not len(q) or (where is not None and (where.cameras == () or where.classes == ())):
            return [[] for _ in range(len(q))]
        condition = to_filter(where)
        requests = [
            models.QueryRequest(query=row, limit=k, filter=condition, with_payload=False)
            for row in q.tolist()
        ]
        with self._lock, self._errors("search"):
            self._check_open()
            answers = self._client.query_batch_points(self.collection, requests=requests)
        return [[Hit(int(p.id), float(p.score)) for p in a.points] for a in answers]

    def remove_before(self, ts_us: int) -> int:
        old = models.Filter(must=[models.FieldCondition(key="ts_us", range=models.Range(lt=ts_us))])
        with self._lock, self._errors("remove_before"):
            self._check_open()
            count = self._client.count(self.collection, count_filter=old, exact=True).count
            if count:
                selector = models.FilterSelector(filter=old)
                self._client.delete(self.collection, points_selector=selector, wait=True)
            return int(count)

    def remove(self, ids: NDArray[np.int64]) -> int:
        wanted = check_ids(ids).tolist()
        if not wanted:
            return 0
        with self._lock, self._errors("remove"):
            self._check_open()
            found = self._client.retrieve(
                self.collection, ids=wanted, with_payload=False, with_vectors=False
            )
            if found:
                selector = models.PointIdsList(points=[p.id for p in found])
                self._client.delete(self.collection, points_selector=selector, wait=True)
            return len(found)

    def __len__(self) -> int:
        with self._lock, self._errors("count"):
            self._check_open()
            return int(self._client.count(self.collection, exact=True).count)

    def ids(self) -> NDArray[np.int64]:
        out: list[int] = []
        offset: models.ExtendedPointId | None = None
        with self._lock, self._errors("ids"):
            self._check_open()
            while True:
                points, offset = self._client.scroll(
                    self.collection,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=False,
                    with_vectors=False,
                )
                out += [int(p.id) for p in points]
                if offset is None:
                    break
        return np.sort(np.asarray(out, np.int64))

    @property
    def last_id(self) -> int:
        return self._last_id

    def save(self) -> None:
        """Record ``last_id`` in the collection's metadata (the points need nothing: Qdrant
        persists every acknowledged write). Several cloud replicas may share the collection,
        so the recorded value only ever grows."""
        with self._lock, self._errors("save"):
            self._check_open()
            if self._last_id <= self._saved_last_id:
                return
            info = self._client.get_collection(self.collection)
            metadata = dict(info.config.metadata or {})
            highest = max(self._last_id, _recorded_last_id(metadata))
            # the whole map: a server that replaces metadata rather than merging keeps it all
            metadata.update(self._spec.metadata, **{LAST_ID_KEY: highest})
            self._client.update_collection(self.collection, metadata=metadata)
            self._saved_last_id = highest

    def close(self) -> None:
        with self._lock:
            if not self._closed and self._owns_client:
                self._client.close()
            self._closed = True

    def describe(self) -> dict[str, object]:
        return {
            "backend": "qdrant",
            "space": self.space,
            "dim": self.dim,
            "kind": "qdrant_hnsw" if self._server else "qdrant_local_exact",
            "collection": self.collection,
            "size": len(self),
            "last_id": self._last_id,
            "shards": self._spec.shards,
            "replicas": self._spec.replicas,
            "write_consistency": self._spec.write_consistency,
            "where": self._label,
        }

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosed(self.space)

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return backend_errors(self._label, what)

    def _open_collection(self) -> int:
        """Check an existing collection, add payload indexes it lacks; its recorded last_id."""
        info = self._client.get_collection(self.collection)
        for difference in self._spec.check(info, self.collection):
            logger.warning("collection %s was created with %s", self.collection, difference)
        if self._server:
            added = self._spec.add_payload_indexes(
                self._client, self.collection, info.payload_schema
            )
            if added:
                logger.info("collection %s: payload indexes added on %s", self.collection, added)
        return _recorded_last_id(info.config.metadata or {})

    def _highest_id(self) -> int:
        order = models.OrderBy(key="id", direction=models.Direction.DESC)
        points, _ = self._client.scroll(
            self.collection, limit=1, order_by=order, with_payload=False, with_vectors=False
        )
        return int(points[0].id) if points else 0


def _recorded_last_id(metadata: dict[str, Any]) -> int:
    value = metadata.get(LAST_ID_KEY)
    return int(value) if isinstance(value, int) else 0
