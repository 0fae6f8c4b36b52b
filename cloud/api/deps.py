"""What the query API needs from the rest of the cloud, as small protocols and one record.

The composition root (``cloud/app.py``) builds an :class:`ApiDeps`; the API never reaches for
configuration or globals. The index and the query encoder are protocols, so tests can give an
exact brute-force searcher and the index keeps its own tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from fastapi import APIRouter
from fastapi.routing import APIRoute
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

from cloud.catalog import Catalog
from cloud.index.base import Hit, SearchFilter
from shared.vectors import CodecSet

if TYPE_CHECKING:
    from PIL import Image


class Searcher(Protocol):
    """Nearest neighbours by cosine similarity, per embedding space (the index)."""

    def search(
        self, space: str, vectors: NDArray[np.float32], k: int, where: SearchFilter | None
    ) -> list[list[Hit]]:
        """For each (unit-norm) row of ``vectors``, up to ``k`` hits, best first.

        Raises a ``KeyError`` subclass for a space the index does not hold.
        """
        ...

    def spaces(self) -> list[str]:
        """Names of the spaces the index holds."""
        ...


class ImageEncoder(Protocol):
    """Embeds images in one space (``cloud.encoder.QueryEncoder``)."""

    @property
    def space(self) -> str: ...

    @property
    def random_init(self) -> bool: ...

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """(n, dim) unit-norm vectors."""
        ...


class TextEncoder(Protocol):
    """Embeds search text in one space (``cloud.text_encoder.ClipTextEncoder``)."""

    @property
    def space(self) -> str: ...

    @property
    def random_init(self) -> bool: ...

    @property
    def dim(self) -> int: ...

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """(n, dim) unit-norm vectors."""
        ...


def _no_details() -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class ApiDeps:
    """Everything :func:`cloud.api.routes.build_api_router` wires together."""

    catalog: Catalog
    token_digests: Mapping[str, bytes]
    """Client name -> SHA-256 of its token; empty: every protected request is refused."""
    searcher: Searcher
    codecs: CodecSet
    """Decodes stored codes; built-in codecs named in the catalog are added on demand."""
    query_encoder: ImageEncoder | None
    """None: search by image answers 409 (no ``encoder`` in the cloud config)."""
    metrics_registry: CollectorRegistry
    """The API's metrics are created on it; one router per registry."""
    metrics_public: bool = False
    """Serve /metrics without a token."""
    docs_public: bool = False
    """Serve /openapi.json and the Swagger page /docs without a token (else: schema only, with)."""
    health: Callable[[], Mapping[str, Any]] = field(default=_no_details)
    """Readiness details for /healthz (index status, ...); the database is checked here."""
    extra_routes: Sequence[Callable[[type[APIRoute]], APIRouter]] = ()
    """More token-protected routers, built with the API's timed route class (the decoder's)."""
    text_encoder: TextEncoder | None = None
    """None: a text search answers descriptions only, and says why there are no crops."""
