"""Open the index of one embedding space with the backend the settings name.

Backends are imported here, when asked for: a cloud configured for faiss never imports
qdrant-client, and one configured for Qdrant never builds faiss structures.
"""

from __future__ import annotations

from cloud.index.base import IndexSettings, VectorIndex


def open_index(settings: IndexSettings, space: str, dim: int) -> VectorIndex:
    """The index of ``space`` (``dim``-dim vectors), loaded from storage when it was saved."""
    if settings.backend == "qdrant":
        from cloud.index.qdrant_index import QdrantIndex

        return QdrantIndex.connect(settings, space, dim)
    from cloud.index.faiss_index import FaissIndex

    return FaissIndex(space, dim, settings)
