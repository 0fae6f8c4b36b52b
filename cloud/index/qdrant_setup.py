"""Reaching Qdrant and preparing a space's collection: the server side of the Qdrant backend.

Split from :mod:`cloud.index.qdrant_index` (the index operations) because these are the
parts that only a server exercises fully:

- :func:`connect_client`: a client for the settings (server URL with API key, timeout, REST or
  gRPC; a local directory; memory). A server is asked its version first, so an unreachable
  one, a wrong key or a server too old for insert-only upserts is one
  :class:`~cloud.index.errors.BackendUnavailable` naming the URL, at opening.
- :class:`CollectionSpec`: what a new collection is created with (cosine vectors of the
  space's width; ``shard_number``, ``replication_factor``, ``write_consistency_factor``; the
  space and dim as metadata) and the payload indexes a server gets with it (integer indexes
  on ``camera``, ``class``, ``ts_us`` and ``id``: filters and the ``last_id`` lookup, which
  orders by ``id`` and needs a range index, never scan). Qdrant's local mode keeps none of
  the cluster parameters and ignores payload indexes, so the spec is a plain value that
  tests here check; against a server the contract suite reads them back from the collection.
- :func:`backend_errors`: every client error (REST, gRPC, local storage) becomes a
  ``BackendUnavailable`` whose message says what was being done and what the server said.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import grpc  # type: ignore[import-untyped]  # (grpcio ships no stubs; qdrant-client needs it)
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from cloud.index.base import IndexSettings
from cloud.index.batch import space_key
from cloud.index.errors import BackendUnavailable, DimensionMismatch, IndexStorageError

logger = logging.getLogger(__name__)

# Insert-only upserts (``update_mode``, so that an id held keeps its first vector as the
# protocol says) arrived in Qdrant 1.17; collection metadata in 1.16.
MIN_SERVER_VERSION: Final = (1, 17)
PAYLOAD_FIELDS: Final = {
    "camera": models.PayloadSchemaType.INTEGER,
    "class": models.PayloadSchemaType.INTEGER,
    "ts_us": models.PayloadSchemaType.INTEGER,
    "id": models.PayloadSchemaType.INTEGER,
}
_AUTH_HINT: Final = " (check index.qdrant_api_key)"


@contextmanager
def backend_errors(backend: str, what: str) -> Iterator[None]:
    """Client errors as :class:`BackendUnavailable` (``backend`` names the server or path)."""
    try:
        yield
    except UnexpectedResponse as exc:
        hint = _AUTH_HINT if exc.status_code in (401, 403) else ""
        body = exc.content[:200].decode("utf-8", "replace")
        said = f"HTTP {exc.status_code} {exc.reason_phrase}{hint}: {body}"
        raise BackendUnavailable(backend, f"{what}: {said}") from exc
    except grpc.RpcError as exc:
        raise BackendUnavailable(backend, f"{what}: {_grpc_reason(exc)}") from exc
    except (ResponseHandlingException, OSError, RuntimeError) as exc:
        raise BackendUnavailable(backend, f"{what}: {exc}") from exc


def _grpc_reason(exc: grpc.RpcError) -> str:
    if isinstance(exc, grpc.Call):  # the errors gRPC raises for a call carry code and details
        code = exc.code()
        name = code.name if code is not None else "UNKNOWN"
        auth = code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        return f"gRPC {name}{_AUTH_HINT if auth else ''}: {exc.details()}"
    return f"gRPC error: {exc}"


def check_server_version(backend: str, version: str) -> None:
    """Refuse a server older than :data:`MIN_SERVER_VERSION` (a development build passes)."""
    match = re.match(r"v?(\d+)\.(\d+)", version)
    if match is None:
        logger.warning("%s: unreadable server version %r, taken as recent", backend, version)
        return
    found = (int(match[1]), int(match[2]))
    if found < MIN_SERVER_VERSION:
        need = ".".join(map(str, MIN_SERVER_VERSION))
        reason = f"server version {version} is too old: semcom needs Qdrant {need} or later"
        raise BackendUnavailable(backend, reason)


def backend_label(settings: IndexSettings, space: str) -> str:
    """How errors name the backend: the server's URL, the local directory, or memory."""
    if settings.qdrant_url is not None:
        return f"qdrant at {settings.qdrant_url}"
    if settings.path is not None:
        return f"qdrant local mode in {settings.path / space_key(space)}"
    return "qdrant local mode in memory"


def connect_client(settings: IndexSettings, space: str) -> QdrantClient:
    """A client for the settings; a server's version is checked before anything else."""
    label = backend_label(settings, space)
    if settings.qdrant_url is not None:
        client = QdrantClient(
            url=settings.qdrant_url,
            api_key=settings.qdrant_api_key,
            timeout=settings.qdrant_timeout_s,
            prefer_grpc=settings.qdrant_prefer_grpc,
            grpc_port=settings.qdrant_grpc_port,
            check_compatibility=False,  # our own check, with a typed error
        )
        try:
            with backend_errors(label, "asking the server its version"):
                version = client.info().version
            check_server_version(label, version)
        except BaseException:
            client.close()
            raise
        return client
    if settings.path is not None:
        directory = settings.path / space_key(space)
        directory.mkdir(parents=True, exist_ok=True)
        with backend_errors(label, "opening local storage"):
            return QdrantClient(path=str(directory), force_disable_check_same_thread=True)
    return QdrantClient(location=":memory:", force_disable_check_same_thread=True)


@dataclass(frozen=True)
class CollectionSpec:
    """What the collection of one space is created with; see the module docstring."""

    space: str
    dim: int
    shards: int = 1
    replicas: int = 1
    write_consistency: int = 1

    @classmethod
    def of(cls, settings: IndexSettings, space: str, dim: int) -> CollectionSpec:
        return cls(
            space=space,
            dim=dim,
            shards=settings.qdrant_shards,
            replicas=settings.qdrant_replicas,
            write_consistency=settings.qdrant_write_consistency,
        )

    @property
    def metadata(self) -> dict[str, Any]:
        return {"space": self.space, "dim": self.dim}

    def create(self, client: QdrantClient, name: str, *, server: bool) -> None:
        client.create_collection(
            name,
            vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
            shard_number=self.shards,
            replication_factor=self.replicas,
            write_consistency_factor=self.write_consistency,
            metadata=self.metadata,
        )
        if server:  # local mode ignores payload indexes (and warns)
            self.add_payload_indexes(client, name, {})

    def add_payload_indexes(
        self, client: QdrantClient, name: str, held: dict[str, models.PayloadIndexInfo]
    ) -> list[str]:
        """Create the payload indexes ``held`` lacks (an older or hand-made collection)."""
        missing = [field for field in PAYLOAD_FIELDS if field not in held]
        for field in missing:
            client.create_payload_index(name, field, field_schema=PAYLOAD_FIELDS[field], wait=True)
        return missing

    def check(self, info: models.CollectionInfo, name: str) -> list[str]:
        """Refuse a collection of another width or space; list settings it was not made with.

        Shards, replicas and write consistency are fixed when a collection is created; a
        collection made with others keeps working, so they are reported, not refused.
        """
        vectors = info.config.params.vectors
        size = vectors.size if isinstance(vectors, models.VectorParams) else None
        if size != self.dim:
            raise DimensionMismatch(self.space, int(size or 0), self.dim, f"open {name}")
        stored = (info.config.metadata or {}).get("space")
        if stored is not None and stored != self.space:
            raise IndexStorageError(name, f"holds space {stored!r}, not {self.space!r}")
        params = info.config.params
        wanted = {
            "shard_number": (params.shard_number, self.shards),
            "replication_factor": (params.replication_factor, self.replicas),
            "write_consistency_factor": (params.write_consistency_factor, self.write_consistency),
        }
        return [
            f"{key} {held} (settings: {want})"
            for key, (held, want) in wanted.items()
            if held is not None and held != want  # local mode keeps none of them
        ]
