"""Fixtures of the query API tests: one catalog per database engine, a live server over it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from cloud.catalog import Catalog
from cloud.config import EncoderConfig
from cloud.encoder import QueryEncoder
from tests.cloud.api_fixtures import (
    SPACE_A,
    SPACE_B,
    ExactSearcher,
    LiveServer,
    World,
    build_world,
    client,
    make_app,
    make_deps,
    postgres_database,
)


@pytest.fixture(scope="module")
def encoder() -> QueryEncoder:
    return QueryEncoder(EncoderConfig(name="vit_tiny_patch16_224", random_init=True))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, encoder: QueryEncoder
) -> Iterator[World]:
    """The same catalog on SQLite and on a real PostgreSQL: every test runs on both."""
    if request.param == "sqlite":
        world = build_world(f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'c.db'}", encoder)
        yield world
        world.engine.dispose()
        return
    with postgres_database(request.getfixturevalue("postgres_server")) as url:
        world = build_world(url, encoder)
        yield world
        world.engine.dispose()


@pytest.fixture(scope="module")
def searcher(world: World) -> ExactSearcher:
    return ExactSearcher(world.engine, [SPACE_A, SPACE_B])


@pytest.fixture(scope="module")
def server(world: World, encoder: QueryEncoder, searcher: ExactSearcher) -> Iterator[str]:
    with LiveServer(make_app(make_deps(world, encoder, searcher))) as live:
        yield live.url


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    with client(server) as c:
        yield c


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[str]:
    """No query encoder, /metrics and the docs public, a database that cannot be opened, a
    failing probe."""
    missing = tmp_path_factory.mktemp("gone") / "no-such-dir" / "c.db"

    def probe() -> dict[str, Any]:
        raise RuntimeError("index probe exploded")

    deps = make_deps(
        world,
        None,
        ExactSearcher(world.engine),
        catalog=Catalog(create_engine(f"sqlite:///{missing}")),
        metrics_public=True,
        docs_public=True,
        health=probe,
    )
    with LiveServer(make_app(deps)) as live:
        yield live.url
