"""Property test of the query API against its own OpenAPI schema (schemathesis, real HTTP).

Schemathesis generates requests from ``/openapi.json`` of a live server (uvicorn on port 0, the
filled test catalog on SQLite and on PostgreSQL, a random-init query encoder) and sends them
with a valid token: both requests that fit the schema (positive) and requests that break it
(negative). None may produce a server error. Examples are bounded per operation, so the module
runs in well under a minute on two cores.

The operations are listed here (and checked against the schema) rather than discovered at
collection time: the schema exists only once the server runs, and schemathesis' own pytest
loader (``from_fixture``) does not work with the pytest this project uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from cloud.api.edges import build_edges_router
from cloud.config import EncoderConfig
from cloud.encoder import QueryEncoder
from cloud.linkmon import LinkMonitor
from shared.messages import Heartbeat
from tests.cloud.api_fixtures import (
    TOKEN,
    LiveServer,
    build_world,
    make_app,
    make_deps,
    postgres_database,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 30
WITHOUT_INPUT = (
    "GET /healthz",
    "GET /metrics",
    "GET /v1/cameras",
    "GET /v1/stats",
    "GET /v1/edges",
)
WITH_INPUT = (
    "GET /v1/detections",
    "GET /v1/detections/{detection_id}",
    "GET /v1/tracks/{track_id}",
    "GET /v1/tracks/{track_id}/path",
    "GET /v1/objects-in-view",
    "POST /v1/search",
    "POST /v1/search/image",
    "GET /v1/descriptions",
    "GET /v1/descriptions/{description_id}",
    "GET /v1/edges/{edge_id}",
)
RUNS = [(label, GenerationMode.POSITIVE) for label in WITHOUT_INPUT + WITH_INPUT] + [
    (label, GenerationMode.NEGATIVE)
    for label in WITH_INPUT  # nothing to break without input
]


def _monitor() -> LinkMonitor:
    """A link monitor that knows one edge, with a health summary."""
    link = LinkMonitor()
    link.session_opened("edge-01", "s-1", "webrtc")
    link.heartbeat("edge-01", Heartbeat(2, 1e5, 0, "f16", 512, {"capture_fps": 25.0}))
    return link


@pytest.fixture(scope="module")
def encoder() -> QueryEncoder:
    return QueryEncoder(EncoderConfig(name="vit_tiny_patch16_224", random_init=True))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def live_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, encoder: QueryEncoder
) -> Iterator[str]:
    """The API over the test catalog on SQLite, then on PostgreSQL (driver errors differ)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'c.db'}"
        else:
            url = stack.enter_context(postgres_database(request.getfixturevalue("postgres_server")))
        world = build_world(url, encoder)
        stack.callback(world.engine.dispose)
        edges = partial(build_edges_router, _monitor())
        deps = make_deps(world, encoder, extra_routes=[edges])
        live = stack.enter_context(LiveServer(make_app(deps)))
        yield live.url


@pytest.fixture(scope="module")
def api_schema(live_api: str) -> Any:
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json", timeout=30, headers=AUTH)


def test_every_operation_is_covered(api_schema: Any) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == {*WITHOUT_INPUT, *WITH_INPUT}


@pytest.mark.parametrize(("label", "mode"), RUNS)
def test_no_server_errors(api_schema: Any, label: str, mode: GenerationMode) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def no_server_error(case: Any) -> None:
        case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

    no_server_error()
