"""The Qdrant backend's server side: settings from the config, what collections are created
with, version and error handling over real HTTP, and (with a server) the collection itself.

Qdrant's local mode keeps no shard, replica or write-consistency parameters and ignores
payload indexes, so here the :class:`CollectionSpec` is checked as a value and applied to a
local collection for what local mode does keep (width, distance, metadata); the tests
marked by :func:`needs_server` read everything back from a real server when
``SEMCOM_TEST_QDRANT_URL`` names one. The behaviour shared with faiss is in
``test_index_contract.py``.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

from cloud.app import index_settings
from cloud.config import ConfigError, load_config
from cloud.index import (
    BackendUnavailable,
    DimensionMismatch,
    IndexSettings,
    IndexStorageError,
    InvalidSettings,
    open_index,
)
from cloud.index.qdrant_index import QdrantIndex, collection_name
from cloud.index.qdrant_setup import PAYLOAD_FIELDS, CollectionSpec, check_server_version
from tests.cloud.index_backends import needs_server, raw_client, server_settings

DIM = 16


def test_config_carries_the_qdrant_settings(tmp_path: Path) -> None:
    keys = {
        "index.backend": "qdrant",
        "index.qdrant_url": "https://qdrant.example:6333",
        "index.qdrant_api_key": "s3cret",
        "index.qdrant_timeout_s": 3,
        "index.qdrant_prefer_grpc": True,
        "index.qdrant_grpc_port": 16334,
        "index.qdrant_shards": 6,
        "index.qdrant_replicas": 2,
        "index.qdrant_write_consistency": 2,
        "data_dir": str(tmp_path),
    }
    settings = index_settings(load_config(None, keys, environ={}))
    assert (settings.backend, settings.qdrant_url, settings.qdrant_api_key) == (
        "qdrant",
        "https://qdrant.example:6333",
        "s3cret",
    )
    assert (settings.qdrant_timeout_s, settings.qdrant_prefer_grpc) == (3, True)
    assert settings.qdrant_grpc_port == 16334
    assert (settings.qdrant_shards, settings.qdrant_replicas) == (6, 2)
    assert settings.qdrant_write_consistency == 2
    env = {"SEMCOM_CLOUD__INDEX__QDRANT_SHARDS": "4", "SEMCOM_CLOUD__DATA_DIR": str(tmp_path)}
    assert index_settings(load_config(None, environ=env)).qdrant_shards == 4


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"index.qdrant_write_consistency": 2}, "exceeds qdrant_replicas"),
        ({"index.qdrant_shards": 0}, "qdrant_shards"),
        ({"index.qdrant_timeout_s": 0}, "qdrant_timeout_s"),
        ({"index.qdrant_shard_count": 2}, "qdrant_shard_count"),  # unknown key
    ],
)
def test_config_refuses_bad_qdrant_settings(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, keys, environ={})


def test_index_settings_are_checked() -> None:
    with pytest.raises(InvalidSettings, match="qdrant_write_consistency"):
        IndexSettings(qdrant_replicas=2, qdrant_write_consistency=3)
    with pytest.raises(InvalidSettings, match="qdrant_timeout_s"):
        IndexSettings(qdrant_timeout_s=0)
    with pytest.raises(InvalidSettings, match="qdrant_grpc_port"):
        IndexSettings(qdrant_grpc_port=70_000)


def test_collection_spec_from_settings_and_on_a_local_collection() -> None:
    settings = IndexSettings(qdrant_shards=4, qdrant_replicas=2, qdrant_write_consistency=2)
    spec = CollectionSpec.of(settings, "vit-16", DIM)
    assert (spec.shards, spec.replicas, spec.write_consistency) == (4, 2, 2)
    assert spec.metadata == {"space": "vit-16", "dim": DIM}
    assert {f: t.value for f, t in PAYLOAD_FIELDS.items()} == {
        "camera": "integer",
        "class": "integer",
        "ts_us": "integer",
        "id": "integer",
    }
    client = QdrantClient(location=":memory:")
    spec.create(client, "c", server=False)
    info = client.get_collection("c")
    vectors = info.config.params.vectors
    assert isinstance(vectors, models.VectorParams)
    assert (vectors.size, vectors.distance) == (DIM, models.Distance.COSINE)
    assert info.config.metadata == {"space": "vit-16", "dim": DIM}
    assert spec.check(info, "c") == []  # local mode keeps no cluster parameters to compare
    params = info.config.params.model_copy(update={"shard_number": 1, "replication_factor": 2})
    made_elsewhere = info.model_copy(
        update={"config": info.config.model_copy(update={"params": params})}
    )
    assert spec.check(made_elsewhere, "c") == ["shard_number 1 (settings: 4)"]
    with pytest.raises(DimensionMismatch):
        replace(spec, dim=DIM * 2).check(info, "c")
    with pytest.raises(IndexStorageError, match="holds space 'vit-16'"):
        replace(spec, space="other-16").check(info, "c")
    client.close()


def test_server_versions() -> None:
    for version in ("1.17.0", "v1.19.1", "2.0.0", "dev"):
        check_server_version("qdrant at x", version)
    with pytest.raises(BackendUnavailable, match=r"1\.16\.3 is too old: semcom needs Qdrant 1\.17"):
        check_server_version("qdrant at x", "1.16.3")


def test_describe_names_the_place_and_the_parameters(tmp_path: Path) -> None:
    settings = IndexSettings(backend="qdrant", path=tmp_path)
    index = open_index(settings, "vit-16", DIM)
    info = index.describe()
    assert (info["backend"], info["kind"], info["shards"], info["write_consistency"]) == (
        "qdrant",
        "qdrant_local_exact",
        1,
        1,
    )
    assert str(tmp_path) in str(info["where"])
    index.close()


# ---------------------------------------------------------------------------- errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_an_unreachable_server_is_one_precise_error(grpc: bool) -> None:
    port = _free_port()  # closed again: connections are refused
    url = f"http://127.0.0.1:{port}"
    settings = IndexSettings(
        backend="qdrant",
        qdrant_url=url,
        qdrant_prefer_grpc=grpc,
        qdrant_grpc_port=port,
        qdrant_timeout_s=2,
    )
    with pytest.raises(BackendUnavailable) as err:
        open_index(settings, "vit-16", DIM)
    assert str(err.value).startswith(f"qdrant at {url}: asking the server its version: ")
    assert err.value.backend == f"qdrant at {url}"


class _Stub(BaseHTTPRequestHandler):
    """Answers every request with ``server.answer`` (status, JSON body)."""

    def do_GET(self) -> None:
        status, body = self.server.answer  # type: ignore[attr-defined]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning")
def test_a_refused_key_and_an_old_server_are_told_apart(stub: ThreadingHTTPServer) -> None:
    """Over real HTTP through qdrant-client: what a server says reaches the message."""
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    settings = IndexSettings(backend="qdrant", qdrant_url=url, qdrant_api_key="wrong")
    stub.answer = (401, {"status": {"error": "Must provide an API key"}})  # type: ignore[attr-defined]
    with pytest.raises(BackendUnavailable, match=r"HTTP 401 .*check index.qdrant_api_key"):
        open_index(settings, "vit-16", DIM)
    stub.answer = (200, {"title": "qdrant - vector search engine", "version": "1.12.4"})  # type: ignore[attr-defined]
    with pytest.raises(BackendUnavailable, match=r"server version 1\.12\.4 is too old"):
        open_index(settings, "vit-16", DIM)


# ---------------------------------------------------------------------------- a real server


@pytest.fixture
def server_space() -> Iterator[tuple[IndexSettings, str]]:
    settings = server_settings()
    assert settings is not None
    space = f"contract-{uuid.uuid4().hex[:12]}"
    yield settings, space
    client = raw_client(settings, space)
    client.delete_collection(collection_name(space))
    client.close()


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
@needs_server()
@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning")
def test_server_collection_is_created_as_configured(
    server_space: tuple[IndexSettings, str], grpc: bool
) -> None:
    base, space = server_space
    settings = replace(
        base, qdrant_shards=3, qdrant_replicas=1, qdrant_prefer_grpc=grpc, qdrant_timeout_s=20
    )
    index = open_index(settings, space, DIM)
    assert isinstance(index, QdrantIndex)
    client = raw_client(settings, space)
    info = client.get_collection(collection_name(space))
    client.close()
    index.close()
    params = info.config.params
    assert (params.shard_number, params.replication_factor) == (3, 1)
    assert params.write_consistency_factor == 1
    assert info.config.metadata is not None
    assert info.config.metadata["space"] == space
    assert {f: s.data_type for f, s in info.payload_schema.items()} == PAYLOAD_FIELDS


@needs_server()
@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning")
def test_server_collection_without_payload_indexes_gets_them(
    server_space: tuple[IndexSettings, str],
) -> None:
    settings, space = server_space
    client = raw_client(settings, space)
    CollectionSpec.of(settings, space, DIM).create(client, collection_name(space), server=False)
    assert client.get_collection(collection_name(space)).payload_schema == {}
    open_index(settings, space, DIM).close()
    schema = client.get_collection(collection_name(space)).payload_schema
    client.close()
    assert set(schema) == set(PAYLOAD_FIELDS)


@needs_server()
@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning")
def test_server_refuses_a_wrong_key() -> None:
    settings = server_settings()
    assert settings is not None
    if settings.qdrant_api_key is None:
        pytest.skip("the test server takes no API key (SEMCOM_TEST_QDRANT_API_KEY unset)")
    with pytest.raises(BackendUnavailable, match=r"check index\.qdrant_api_key"):
        open_index(replace(settings, qdrant_api_key="not-the-key"), "contract-key-16", DIM)
