"""The vector index backends the contract suite runs against, one pytest parameter each.

faiss (exact Flat, and IVF with ``nprobe == nlist`` so that its answers are exact too) and
Qdrant's local mode (on disk) always run. A real Qdrant server runs only when
``SEMCOM_TEST_QDRANT_URL`` names one (``SEMCOM_TEST_QDRANT_API_KEY`` when it wants a key);
otherwise its parameter is skipped with the reason below. A server's collections are shared
with whatever else uses it, so every test gets spaces (collections) of its own, named
``contract-<random>``, and drops them when it ends: nothing else on the server is touched.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import pytest

from cloud.index import IndexSettings, VectorIndex, open_index
from cloud.index.batch import space_key
from cloud.index.qdrant_index import collection_name

QDRANT_URL_ENV: Final = "SEMCOM_TEST_QDRANT_URL"
QDRANT_KEY_ENV: Final = "SEMCOM_TEST_QDRANT_API_KEY"
NO_SERVER: Final = (
    f"no Qdrant server to test against: set {QDRANT_URL_ENV}=http://HOST:6333 "
    f"(and {QDRANT_KEY_ENV} if it needs an API key) to run these tests on one"
)
# qdrant-client warns when an API key travels over plain http (a test server often does).
_INSECURE_KEY: Final = "ignore:Api key is used with an insecure connection:UserWarning"


def server_settings(**changes: Any) -> IndexSettings | None:
    """Settings for the test server named by the environment; None when there is none."""
    url = os.environ.get(QDRANT_URL_ENV)
    if not url:
        return None
    key = os.environ.get(QDRANT_KEY_ENV) or None
    return IndexSettings(backend="qdrant", qdrant_url=url, qdrant_api_key=key, **changes)


def needs_server() -> pytest.MarkDecorator:
    return pytest.mark.skipif(server_settings() is None, reason=NO_SERVER)


def server_marks() -> list[pytest.MarkDecorator]:
    return [needs_server(), pytest.mark.filterwarnings(_INSECURE_KEY)]


@dataclass
class Backend:
    """One backend under test: its settings and the spaces a test opened on it."""

    name: str
    settings: IndexSettings
    space: str = field(default_factory=lambda: f"contract-{uuid.uuid4().hex[:12]}")
    opened: list[VectorIndex] = field(default_factory=list)
    spaces: set[str] = field(default_factory=set)

    @property
    def kind(self) -> str:
        return self.settings.backend

    def open(self, dim: int, *, space: str | None = None, **changes: Any) -> VectorIndex:
        """The index of ``space`` (the test's own by default), through the real factory."""
        name = space or self.space
        self.spaces.add(name)
        index = open_index(replace(self.settings, **changes), name, dim)
        self.opened.append(index)
        return index

    def claim_other_space(self, other: str) -> None:
        """Make the saved storage of the test's space say it holds ``other`` (closed first)."""
        if self.kind == "faiss":
            assert self.settings.path is not None
            manifest = self.settings.path / space_key(self.space) / "manifest.json"
            doc = json.loads(manifest.read_text())
            manifest.write_text(json.dumps({**doc, "space": other}))
            return
        client = raw_client(self.settings, self.space)
        try:
            client.update_collection(collection_name(self.space), metadata={"space": other})
        finally:
            client.close()

    def close(self) -> None:
        for index in self.opened:
            index.close()
        if self.settings.qdrant_url is None:
            return  # files under tmp_path
        client = raw_client(self.settings, self.space)
        try:
            for name in self.spaces:
                client.delete_collection(collection_name(name))
        finally:
            client.close()


def raw_client(settings: IndexSettings, space: str) -> Any:
    """A plain qdrant-client on the storage of ``space`` (for what the protocol cannot see)."""
    from qdrant_client import QdrantClient

    if settings.qdrant_url is not None:
        return QdrantClient(
            url=settings.qdrant_url, api_key=settings.qdrant_api_key, check_compatibility=False
        )
    assert settings.path is not None
    return QdrantClient(path=str(settings.path / space_key(space)))


# name -> settings for a fresh directory; the server's entry ignores the directory
BACKENDS: Final[dict[str, Callable[[Path], IndexSettings | None]]] = {
    "faiss-flat": lambda p: IndexSettings(path=p, kind="flat"),
    # IVF trains from 39 vectors per list; nprobe == nlist scans every list: exact answers
    "faiss-ivf": lambda p: IndexSettings(path=p, kind="ivf", nlist=8, nprobe=8),
    "qdrant-local": lambda p: IndexSettings(backend="qdrant", path=p),
    "qdrant-server": lambda _: server_settings(),
}


def backend_params() -> list[Any]:
    """The pytest parameters of :data:`BACKENDS`, the server's skipped without a server."""
    return [
        pytest.param(name, marks=server_marks() if name == "qdrant-server" else ())
        for name in BACKENDS
    ]


def make_backend(name: str, directory: Path) -> Backend:
    settings = BACKENDS[name](directory)
    assert settings is not None  # the server's parameter is skipped without one
    return Backend(name, settings)
