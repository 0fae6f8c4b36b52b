"""Property test of the alert routes (dead letters: list, replay) against the API's OpenAPI
schema (schemathesis, real HTTP), as ``tests/cloud/test_api_schema.py`` does for the query
API: requests that fit the schema and requests that break it, on SQLite and PostgreSQL.

The server is the API as ``cloud/app.py`` wires it with alerts configured (the dead-letter
router over a real :class:`~cloud.alerts.dispatcher.AlertDispatcher`); its dead letters come
from real deliveries that failed: a receiver on 127.0.0.1 that refused them (HTTP 400: its
replays succeed, then are refused as already replayed) and a closed port (its replays fail
again: 502), plus one whose target is no longer configured (409). Every response must be no
server error, have a documented status code and content type, match its schema, and the
routes must refuse a request without the token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from cloud.alerts.config import AlertsConfig
from cloud.alerts.dispatcher import AlertDispatcher
from cloud.api.alerts import build_alerts_router
from cloud.api.deps import ApiDeps
from cloud.catalog import Catalog as ApiCatalog
from cloud.db import open_database
from shared.vectors import CodecSet
from tests.alerts.conftest import T0, Catalog, Receiver, free_port, seed_cameras, serving
from tests.cloud.api_fixtures import (
    DIGESTS,
    TOKEN,
    ExactSearcher,
    LiveServer,
    make_app,
    postgres_database,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 30
OPERATIONS = (
    "GET /v1/alerts/dead-letters",
    "POST /v1/alerts/dead-letters/{letter_id}/replay",
)
RUNS = [
    (label, mode)
    for label in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
]
# A replay whose target fails again is 502 delivery_failed (documented, docs/alerts.md): the
# upstream failed, not this server; any other 5xx, and 502 anywhere else, is still an error.
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path": "/v1/alerts/dead-letters/{letter_id}/replay",
                "checks": {
                    "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "502"]}
                },
            }
        ]
    }
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
    positive_data_acceptance,
]
# Not negative_data_rejection: a scalar query parameter given twice (``before=x&before=7``)
# takes its last value, as FastAPI does on every route of the API, where schemathesis wants
# the request refused.


def alerts_config(receiver_url: str) -> AlertsConfig:
    hook = {"secret": "receiver-secret", "max_attempts": 1}
    return AlertsConfig.model_validate(
        {
            "start_at": "beginning",
            "rules": [
                {"name": "crossings", "kinds": "line_crossing", "targets": ["ops"]},
                {"name": "wrong-way", "kinds": "wrong_way", "targets": ["down"]},
            ],
            "webhooks": {
                "ops": {"url": receiver_url, **hook},
                # nothing listens there: every attempt fails (connection refused)
                "down": {"url": f"http://127.0.0.1:{free_port()}/hook", **hook},
            },
        }
    )


def dead_letters(catalog: Catalog, dispatcher: AlertDispatcher, receiver: Receiver) -> None:
    """Dead letters made by real failed deliveries, and one whose target is gone."""
    receiver.statuses = [400] * 4
    for _ in range(6):
        catalog.add_event()
    for _ in range(2):
        catalog.add_event(kind="wrong_way", subject="ramp", direction=None, value=5.0, unit="m")

    async def dispatch() -> None:
        try:
            while await dispatcher.step():
                pass
        finally:
            await dispatcher.aclose()  # the server's event loop opens its own clients

    asyncio.run(dispatch())
    dispatcher.store.add_dead_letter(
        rule="paging",
        target="pager",  # a webhook since removed from the config
        event_id=1,
        payload={"rule": "paging", "event": {"id": 1}, "camera": {}, "sent_at": "x"},
        error="HTTP 503",
        attempts=5,
        now_us=T0,
    )
    letters = dispatcher.store.dead_letters()
    assert sorted(letter.target for letter in letters) == ["down"] * 2 + ["ops"] * 4 + ["pager"]


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
        engine = open_database(url)
        stack.callback(engine.dispose)
        receiver = stack.enter_context(serving(Receiver(secret=b"receiver-secret")))
        dispatcher = AlertDispatcher(alerts_config(receiver.url), engine, CollectorRegistry())
        dead_letters(Catalog(engine, seed_cameras(engine)), dispatcher, receiver)
        deps = ApiDeps(
            catalog=ApiCatalog(engine),
            token_digests=DIGESTS,
            searcher=ExactSearcher(engine, []),
            codecs=CodecSet(),
            query_encoder=None,
            metrics_registry=CollectorRegistry(),
            extra_routes=[partial(build_alerts_router, dispatcher.store, dispatcher.replay)],
        )
        live = stack.enter_context(LiveServer(make_app(deps)))
        yield live.url


@pytest.fixture(scope="module")
def api_schema(live_api: str) -> Any:
    return schemathesis.openapi.from_url(
        f"{live_api}/openapi.json", config=CONFIG, timeout=30, headers=AUTH
    )


def test_the_operations_are_in_the_schema(api_schema: Any) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert set(OPERATIONS) <= labels


def test_the_routes_need_the_token(live_api: str) -> None:
    """No token: 401; an unknown one: 403 (as every route of the API, cloud/api/auth.py)."""
    for method, path in (
        ("GET", "/v1/alerts/dead-letters"),
        ("POST", "/v1/alerts/dead-letters/1/replay"),
    ):
        for headers, status in (({}, 401), ({"Authorization": "Bearer not-the-token"}, 403)):
            answer = httpx.request(method, f"{live_api}{path}", headers=headers)
            assert answer.status_code == status, (method, path, headers)


def test_every_replay_outcome_matches_the_schema(api_schema: Any, live_api: str) -> None:
    """Each documented answer of a replay, once for certain (generated ids rarely name a
    letter): delivered, already replayed, target gone, failed again, no such letter."""
    replay = api_schema.find_operation_by_label(OPERATIONS[1])
    with httpx.Client(base_url=live_api, headers=AUTH) as api:
        letters = api.get("/v1/alerts/dead-letters").raise_for_status().json()["dead_letters"]
    by_target = {letter["target"]: letter["id"] for letter in letters}
    expected = [
        (by_target["ops"], 200),
        (by_target["ops"], 409),  # already replayed
        (by_target["pager"], 409),  # its target is gone
        (by_target["down"], 502),  # the target fails again
        (max(by_target.values()) + 1000, 404),
    ]
    for letter_id, status in expected:
        case = replay.Case(path_parameters={"letter_id": letter_id})
        answer = case.call_and_validate(headers=AUTH, checks=CHECKS)
        assert answer.status_code == status, (letter_id, answer.text)


@pytest.mark.parametrize(("label", "mode"), RUNS)
def test_responses_match_the_schema(api_schema: Any, label: str, mode: GenerationMode) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def conforms(case: Any) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    conforms()
