"""Property test of the analytics routes against the API's OpenAPI schema (schemathesis, real
HTTP), as ``test_api_schema.py`` does for the query API: generated requests that fit the
schema and requests that break it, on SQLite and PostgreSQL; none may be a server error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.cloud.analytics_fixtures import traffic_world
from tests.cloud.api_fixtures import TOKEN, LiveServer, make_app, postgres_database
from tests.cloud.test_api_analytics import analytics_deps

AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 30
OPERATIONS = (
    "PUT /v1/cameras/{camera_id}/scene",
    "GET /v1/cameras/{camera_id}/scene",
    "GET /v1/cameras/{camera_id}/scenes",
    "GET /v1/events",
    "GET /v1/analytics/counts",
    "GET /v1/analytics/congestion",
)
RUNS = [
    (label, mode)
    for label in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def live_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'c.db'}"
        else:
            url = stack.enter_context(postgres_database(request.getfixturevalue("postgres_server")))
        engine, _camera = traffic_world(url)
        stack.callback(engine.dispose)
        live = stack.enter_context(LiveServer(make_app(analytics_deps(engine))))
        yield live.url


@pytest.fixture(scope="module")
def api_schema(live_api: str) -> Any:
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json", timeout=30, headers=AUTH)


def test_the_operations_are_in_the_schema(api_schema: Any) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert set(OPERATIONS) <= labels


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
