"""The vector index contract: one protocol, its value types and its settings.

An index holds the embeddings of one *space* (one encoder at one width, e.g.
``"vit_small_patch16_224-384"``): vectors from different encoders are not comparable, so they
never share an index (nor a faiss file or a Qdrant collection). Each vector is keyed by its
catalog detection id and carries the three attributes searches filter on: camera, detector
class and capture time (microseconds since the epoch). Scores are inner products of unit
vectors (cosine similarity): higher is closer.

Backends: :class:`cloud.index.faiss_index.FaissIndex` (embedded, the default) and
:class:`cloud.index.qdrant_index.QdrantIndex` (scale-out); :func:`cloud.index.open_index`
picks one from :class:`IndexSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from cloud.index.errors import InvalidSettings


@dataclass(frozen=True)
class SearchFilter:
    """Conditions a hit must meet; ``None`` means "any". An empty tuple matches nothing."""

    cameras: tuple[int, ...] | None = None  # catalog camera ids
    classes: tuple[int, ...] | None = None  # detector class ids
    from_us: int | None = None  # inclusive, capture time, microseconds since epoch
    to_us: int | None = None  # exclusive

    @property
    def is_everything(self) -> bool:
        """True when no condition is set (the same as no filter)."""
        return all(v is None for v in (self.cameras, self.classes, self.from_us, self.to_us))


@dataclass(frozen=True)
class Hit:
    id: int  # the catalog detection id (int64)
    score: float  # inner product of unit vectors (cosine); higher is closer


@runtime_checkable
class VectorIndex(Protocol):
    """A searchable set of unit vectors of one embedding space; safe to use from threads."""

    space: str  # name of the embedding space; one index per space
    dim: int

    def add(
        self,
        ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
        cameras: NDArray[np.int32],
        classes: NDArray[np.int32],
        ts_us: NDArray[np.int64],
    ) -> None:
        """Index vectors (normalised here) under their ids, in any order.

        Idempotent: an id the index holds already is not added again (its vector is the
        catalog's, so the same), which makes re-adding catalog rows after a crash safe.
        """
        ...

    def search(
        self, queries: NDArray[np.float32], k: int, where: SearchFilter | None = None
    ) -> list[list[Hit]]:
        """The ``k`` best hits of each query row (fewer when fewer match), best first."""
        ...

    def remove_before(self, ts_us: int) -> int:
        """Retention: drop vectors captured before ``ts_us``; returns how many."""
        ...

    def remove(self, ids: NDArray[np.int64]) -> int:
        """Drop these ids (unknown ones are ignored); returns how many were dropped."""
        ...

    def __len__(self) -> int: ...

    def ids(self) -> NDArray[np.int64]:
        """Every id held, sorted (the indexer compares them with the catalog at start-up)."""
        ...

    @property
    def last_id(self) -> int:
        """Highest id ever added; 0 if empty. Lower ids may still arrive (see add)."""
        ...

    def save(self) -> None:
        """Persist what is not yet durable: faiss writes its files atomically (temporary files
        + ``os.replace``); Qdrant, which persists every write itself, records ``last_id``."""
        ...

    def close(self) -> None: ...

    def describe(self) -> dict[str, object]:
        """Kind, size and parameters, for ``/v1/stats`` and the benchmark."""
        ...


IndexKind = Literal["auto", "flat", "ivf", "hnsw"]


@dataclass(frozen=True)
class IndexSettings:
    """How to build and where to keep the indexes; the cloud maps its config onto this.

    The defaults were measured with ``semcom bench index`` (1M x 384 on two cores, see
    :mod:`semcom.bench.index`).
    """

    backend: Literal["faiss", "qdrant"] = "faiss"
    # faiss: directory of the index files (one set per space); qdrant: local-mode storage
    # (one sub-directory per space) unless qdrant_url is set. None: in memory only.
    path: Path | None = None
    qdrant_url: str | None = None  # e.g. "http://qdrant:6333": a Qdrant server or cluster
    qdrant_api_key: str | None = None
    qdrant_shards: int = 1  # shard_number of new collections (a cluster: ~ nodes x 2)
    qdrant_replicas: int = 1  # replication_factor of new collections
    # write_consistency_factor of new collections: replicas that acknowledge a write
    qdrant_write_consistency: int = 1
    qdrant_timeout_s: int = 10  # per request to the server (qdrant-client takes whole seconds)
    qdrant_prefer_grpc: bool = False  # gRPC (qdrant_grpc_port) instead of REST for data calls
    qdrant_grpc_port: int = 6334
    # Drop what is stored for the space when opening (a rebuild from the catalog follows).
    recreate: bool = False
    # faiss index structure. auto: exhaustive Flat up to flat_max vectors, IVF above (fp16).
    kind: IndexKind = "auto"
    flat_max: int = 20_000
    nlist: int | None = None  # IVF lists; None: sized from the count (and retrained as it grows)
    nprobe: int = 16  # IVF lists scanned by an unfiltered query
    # IVF: candidates fetched by their 8-bit scores per hit wanted, re-ranked exactly.
    refine_factor: int = 4
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    # Planner: a filter matching at most this many vectors is always searched exactly.
    exact_max_candidates: int = 2_048
    # Planner: the cost of scoring one candidate exactly (gathered row), in units of one
    # IVF list entry skipped by the selector; measured ~30 at 384 dims (bench index).
    exact_cost_ratio: float = 30.0
    # Compact (rebuild without removed vectors) once this share of the stored rows is dead.
    compact_dead_share: float = 0.25
    seed: int = 0  # training sample and k-means

    def __post_init__(self) -> None:
        positive = {
            "flat_max": self.flat_max,
            "nprobe": self.nprobe,
            "refine_factor": self.refine_factor,
            "hnsw_m": self.hnsw_m,
            "hnsw_ef_construction": self.hnsw_ef_construction,
            "hnsw_ef_search": self.hnsw_ef_search,
            "qdrant_shards": self.qdrant_shards,
            "qdrant_replicas": self.qdrant_replicas,
            "qdrant_write_consistency": self.qdrant_write_consistency,
            "qdrant_timeout_s": self.qdrant_timeout_s,
            "qdrant_grpc_port": self.qdrant_grpc_port,
        }
        for name, value in positive.items():
            if value < 1:
                raise InvalidSettings(name, f"must be at least 1, got {value}")
        if self.qdrant_write_consistency > self.qdrant_replicas:
            reason = f"must not exceed qdrant_replicas ({self.qdrant_replicas})"
            raise InvalidSettings("qdrant_write_consistency", reason)
        if self.qdrant_grpc_port > 65_535:
            raise InvalidSettings("qdrant_grpc_port", f"not a port: {self.qdrant_grpc_port}")
        if self.nlist is not None and self.nlist < 1:
            raise InvalidSettings("nlist", f"must be at least 1, got {self.nlist}")
        if self.exact_max_candidates < 0:
            raise InvalidSettings("exact_max_candidates", "must not be negative")
        if self.exact_cost_ratio <= 0:
            raise InvalidSettings("exact_cost_ratio", "must be positive")
        if not 0 < self.compact_dead_share <= 1:
            raise InvalidSettings("compact_dead_share", "must be in (0, 1]")
