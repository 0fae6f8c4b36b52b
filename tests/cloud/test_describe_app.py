"""The describer inside ``semcom cloud serve``'s app: lifespan, worker, API (real HTTP)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn

from cloud.app import create_app
from cloud.config import CloudConfig
from tests.cloud.api_fixtures import TOKEN, client
from tests.cloud.describe_fixtures import T0, fill_scene


def test_the_service_describes_closed_windows_with_rules(tmp_path: Path) -> None:
    config = CloudConfig.model_validate(
        {
            "port": 0,
            "data_dir": str(tmp_path),
            "api_tokens": {"dashboard": {"token": TOKEN}},
            "describer": {"window_s": 60, "poll_s": 0.1, "events": False},
        }
    )
    app = create_app(config)
    fill_scene(app.state.services.engine)  # a minute long past: closed by the wall clock
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        with client(f"http://127.0.0.1:{port}") as api:
            items: list[dict[str, object]] = []
            while not items and time.monotonic() < deadline:
                items = api.get("/v1/descriptions").json()["items"]
                time.sleep(0.05)
            metrics = api.get("/metrics").text
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()
    [only] = items
    assert only["describer"] == "rules"
    assert only["rules"] is True
    assert only["start"] == "2026-11-24T10:00:00Z"
    assert only["congestion"] == "moderate"
    assert 'semcom_describer_jobs_total{describer="rules",outcome="done"} 1.0' in metrics
    assert T0 % 60_000_000 == 0
