"""The alerts inside ``semcom cloud serve``'s app (lifespan, dispatcher task) and the
dead-letter routes over real HTTP: list, replay after the receiver recovers, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cloud.app import create_app
from cloud.config import CloudConfig, ConfigError, load_config
from tests.alerts.conftest import Catalog, Receiver, seed_cameras
from tests.cloud.api_fixtures import TOKEN, client


def cloud_config(tmp_path: Path, receiver: Receiver) -> CloudConfig:
    return CloudConfig.model_validate(
        {
            "port": 0,
            "data_dir": str(tmp_path),
            "api_tokens": {"ops": {"token": TOKEN}},
            "describer": {"enabled": False},
            "alerts": {
                "poll_s": 0.05,
                "start_at": "beginning",
                "rules": [{"name": "wrong-way", "kinds": "wrong_way", "targets": ["ops"]}],
                "webhooks": {
                    "ops": {
                        "url": receiver.url,
                        "secret": "receiver-secret",
                        "max_attempts": 2,
                        "backoff_s": 0.01,
                    }
                },
            },
        }
    )


@pytest.fixture
def served(tmp_path: Path, receiver: Receiver) -> Iterator[tuple[str, Catalog]]:
    app = create_app(cloud_config(tmp_path, receiver))
    engine = app.state.services.engine
    catalog = Catalog(engine, seed_cameras(engine))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", catalog
    server.should_exit = True
    thread.join(15)
    assert not thread.is_alive()


def wait_for(api: httpx.Client, path: str, ready: Any) -> Any:
    deadline = time.monotonic() + 15
    while True:
        body = api.get(path).raise_for_status().json()
        if ready(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_dead_letters_listed_and_replayed(served: tuple[str, Catalog], receiver: Receiver) -> None:
    url, catalog = served
    receiver.statuses = [500, 500]
    event = catalog.add_event(kind="wrong_way", subject="ramp", direction=None)
    with client(url) as api:
        page = wait_for(api, "/v1/alerts/dead-letters", lambda b: b["dead_letters"])
        [letter] = page["dead_letters"]
        assert page["next_before"] is None
        assert (letter["rule"], letter["target"], letter["event_id"]) == ("wrong-way", "ops", event)
        assert (letter["attempts"], letter["error"], letter["replayed"]) == (2, "HTTP 500", None)
        assert letter["payload"]["event"]["kind"] == "wrong_way"
        # the receiver works again
        replayed = api.post(f"/v1/alerts/dead-letters/{letter['id']}/replay")
        assert replayed.status_code == 200
        assert replayed.json()["replayed"] is not None
        assert replayed.json()["attempts"] == 3
        again = api.post(f"/v1/alerts/dead-letters/{letter['id']}/replay")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "conflict"
        missing = api.post("/v1/alerts/dead-letters/999/replay")
        assert missing.status_code == 404
        assert missing.json()["error"] == {"code": "not_found", "message": "no dead letter 999"}
        assert api.get("/v1/alerts/dead-letters?pending=true").json()["dead_letters"] == []
        bad = api.get("/v1/alerts/dead-letters?limit=0")
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_parameter"
        metrics = api.get("/metrics").text
        anonymous = httpx.get(f"{url}/v1/alerts/dead-letters")
    assert anonymous.status_code == 401
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert receiver.received[-1].headers["idempotency-key"] == f"{event}:wrong-way"
    assert 'semcom_alerts_failed_total{target="ops"} 1.0' in metrics
    assert 'semcom_alerts_sent_total{target="ops"} 1.0' in metrics


def test_a_failing_replay_is_502_and_recorded(
    served: tuple[str, Catalog], receiver: Receiver
) -> None:
    url, catalog = served
    receiver.statuses = [503, 503, 503]
    catalog.add_event(kind="wrong_way", subject="ramp", direction=None)
    with client(url) as api:
        [letter] = wait_for(api, "/v1/alerts/dead-letters", lambda b: b["dead_letters"])[
            "dead_letters"
        ]
        failed = api.post(f"/v1/alerts/dead-letters/{letter['id']}/replay")
        assert failed.status_code == 502
        assert failed.json()["error"]["code"] == "delivery_failed"
        assert "HTTP 503" in failed.json()["error"]["message"]
        [after] = api.get("/v1/alerts/dead-letters").json()["dead_letters"]
    assert after["attempts"] == 3
    assert after["replayed"] is None


def test_the_openapi_schema_documents_the_routes(served: tuple[str, Catalog]) -> None:
    url, _ = served
    with client(url) as api:
        schema = api.get("/openapi.json").raise_for_status().json()
    listing = schema["paths"]["/v1/alerts/dead-letters"]["get"]
    replay = schema["paths"]["/v1/alerts/dead-letters/{letter_id}/replay"]["post"]
    assert listing["tags"] == ["alerts"]
    assert {"401", "403", "422"} <= set(listing["responses"])
    assert {"200", "404", "409", "502"} <= set(replay["responses"])


def test_alerts_in_the_cloud_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cloud.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "alerts:\n"
        "  rules:\n"
        "    - {name: fast, kinds: speed, speed_above: 70, targets: [ops, mqtt]}\n"
        "  webhooks:\n"
        "    ops: {url: 'https://hooks.example.org/x'}\n"
        "  mqtt: {host: broker.example.org, username: semcom, password_env: MQTT_PW}\n"
    )
    env = {"SEMCOM_CLOUD__ALERTS__WEBHOOKS__OPS__SECRET": "from-env"}
    config = load_config(path, environ=env)
    assert config.alerts is not None
    hook = config.alerts.webhooks["ops"]
    assert hook.resolve_secret("ops") == b"from-env"
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("speed_above: 70", "speed_above: -1"))
    with pytest.raises(ConfigError, match=r"alerts\.rules\.0\.speed_above: Input should be"):
        load_config(bad, environ=env)
    with pytest.raises(ConfigError, match="give exactly one of secret and secret_env"):
        load_config(path, environ={})
    monkeypatch.delenv("MQTT_PW", raising=False)
    with pytest.raises(
        Exception, match=r"alerts\.mqtt\.password_env: environment variable MQTT_PW"
    ):
        create_app(config)
    assert not (tmp_path / "data").exists()  # refused before the database is made
