"""The scale-out vector index: Qdrant, one collection per embedding space.

Each space gets its own collection (``semcom-<space key>``, see
:func:`cloud.index.batch.space_key`) of ``dim``-dim vectors with cosine distance, so vectors
of different encoders never meet; the collection's metadata records the space and dim, and
opening it for another dim is a :class:`~cloud.index.errors.DimensionMismatch`. A point's id
is the catalog detection id; its payload holds ``camera``, ``class``, ``ts_us`` (the filter
fields) and ``id`` (for ``last_id``, found by ordering on it). Adds are upserts: adding an id
again overwrites its point with the same vector, so re-adding catalog rows is harmless.
Filters become Qdrant payload conditions (``MatchAny`` for cameras and classes, ``Range`` for
the time window), which Qdrant's own planner answers by HNSW with filtering or by exact
search over a small candidate set.

Three ways to run it (:meth:`QdrantIndex.connect`):

- ``IndexSettings(backend="qdrant", qdrant_url="http://qdrant:6333")``: a Qdrant server or
  cluster; add ``qdrant_api_key`` when the server sets ``service.api_key`` (use https then).
  New collections are created with ``shard_number = qdrant_shards`` and
  ``replication_factor = qdrant_replicas``: on a cluster of N nodes, about 2 x N shards and
  a replication factor of 2 survive one node and spread the load; set them before the first
  vector arrives (resharding an existing collection is a Qdrant Cloud feature). On a server
  the payload fields get indexes (integer; ``ts_us`` and ``id`` with range lookups) so
  filters and the ``last_id`` lookup do not scan. Tuning beyond that (on-disk vectors,
  quantisation, HNSW ``m``/``ef_construct``) is done on the collection with Qdrant's own
  API or console; this class only creates it when missing.
- ``path`` without a URL: qdrant-client's local mode, one storage directory per space under
  ``path`` (local mode locks its directory to one client). Exact search in Python: fine for
  tests and a few tens of thousands of vectors, slow beyond.
- neither: local mode in memory.

Local mode is not thread-safe, so calls are serialised there; a server client is used from
any thread. Client errors become :class:`~cloud.index.errors.BackendUnavailable`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from cloud.index.base import Hit, IndexSettings, SearchFilter
from cloud.index.batch import check_batch, check_ids, check_queries, space_key
from cloud.index.errors import (
    BackendUnavailable,
    DimensionMismatch,
    IndexClosed,
    IndexStorageError,
)

UPSERT_CHUNK: Final = 1_024  # points per upsert request
SCROLL_PAGE: Final = 10_000  # ids per scroll request (ids())
_PAYLOAD_FIELDS: Final = {
    "camera": models.PayloadSchemaType.INTEGER,
    "class": models.PayloadSchemaType.INTEGER,
    "ts_us": models.PayloadSchemaType.INTEGER,
    "id": models.PayloadSchemaType.INTEGER,
}


@contextmanager
def _backend_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (UnexpectedResponse, ResponseHandlingException, OSError, RuntimeError) as exc:
        raise BackendUnavailable("qdrant", f"{what}: {exc}") from exc


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
        space: str,
        dim: int,
        *,
        server: bool,
        shards: int = 1,
        replicas: int = 1,
        recreate: bool = False,
        owns_client: bool = True,
    ) -> None:
        self.space = space
        self.dim = dim
        self.collection = collection_name(space)
        self._client = client
        self._server = server
        self._owns_client = owns_client
        self._shards, self._replicas = shards, replicas
        self._lock: AbstractContextManager[Any] = nullcontext() if server else threading.Lock()
        self._closed = False
        with self._lock, _backend_errors(f"opening collection {self.collection}"):
            if recreate and client.collection_exists(self.collection):
                client.delete_collection(self.collection)
            if client.collection_exists(self.collection):
                self._check_collection()
            else:
                self._create_collection()
            self._last_id = self._highest_id()

    @classmethod
    def connect(cls, settings: IndexSettings, space: str, dim: int) -> QdrantIndex:
        """A client for the settings (server, local directory, or memory) and the index."""
        if settings.qdrant_url is not None:
            client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
        elif settings.path is not None:
            directory = settings.path / space_key(space)
            directory.mkdir(parents=True, exist_ok=True)
            with _backend_errors(f"local storage {directory}"):
                client = QdrantClient(path=str(directory), force_disable_check_same_thread=True)
        else:
            client = QdrantClient(location=":memory:", force_disable_check_same_thread=True)
        try:
            return cls(
                client,
                space,
                dim,
                server=settings.qdrant_url is not None,
                shards=settings.qdrant_shards,
                replicas=settings.qdrant_replicas,
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
        with self._lock, _backend_errors("add"):
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
                self._client.upsert(self.collection, points=points, wait=True)
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
        with self._lock, _backend_errors("search"):
            self._check_open()
            answers = self._client.query_batch_points(self.collection, requests=requests)
        return [[Hit(int(p.id), float(p.score)) for p in a.points] for a in answers]

    def remove_before(self, ts_us: int) -> int:
        old = models.Filter(must=[models.FieldCondition(key="ts_us", range=models.Range(lt=ts_us))])
        with self._lock, _backend_errors("remove_before"):
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
        with self._lock, _backend_errors("remove"):
            self._check_open()
            found = self._client.retrieve(
                self.collection, ids=wanted, with_payload=False, with_vectors=False
            )
            if found:
                selector = models.PointIdsList(points=[p.id for p in found])
                self._client.delete(self.collection, points_selector=selector, wait=True)
            return len(found)

    def __len__(self) -> int:
        with self._lock, _backend_errors("count"):
            self._check_open()
            return int(self._client.count(self.collection, exact=True).count)

    def ids(self) -> NDArray[np.int64]:
        out: list[int] = []
        offset: models.ExtendedPointId | None = None
        with self._lock, _backend_errors("ids"):
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
        """Nothing to do: Qdrant persists every acknowledged write itself."""

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
            "shards": self._shards,
            "replicas": self._replicas,
        }

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosed(self.space)

    def _create_collection(self) -> None:
        self._client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
            shard_number=self._shards,
            replication_factor=self._replicas,
            metadata={"space": self.space, "dim": self.dim},
        )
        if self._server:  # local mode ignores payload indexes (and warns)
            for name, schema in _PAYLOAD_FIELDS.items():
                self._client.create_payload_index(self.collection, name, field_schema=schema)

    def _check_collection(self) -> None:
        config = self._client.get_collection(self.collection).config
        vectors = config.params.vectors
        size = vectors.size if isinstance(vectors, models.VectorParams) else None
        if size != self.dim:
            raise DimensionMismatch(self.space, int(size or 0), self.dim, f"open {self.collection}")
        stored = (config.metadata or {}).get("space")
        if stored is not None and stored != self.space:
            found = f"holds space {stored!r}, not {self.space!r}"
            raise IndexStorageError(self.collection, found)

    def _highest_id(self) -> int:
        order = models.OrderBy(key="id", direction=models.Direction.DESC)
        points, _ = self._client.scroll(
            self.collection, limit=1, order_by=order, with_payload=False, with_vectors=False
        )
        return int(points[0].id) if points else 0
