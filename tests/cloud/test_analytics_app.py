"""The analytics runner inside ``semcom cloud serve``'s app: a scene PUT over HTTP, traffic
through the ingest path, events and counts and metrics from the running service."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn

from cloud.app import create_app
from cloud.config import CloudConfig
from tests.cloud.analytics_fixtures import CAR, PERSON, SCENE, T0, Road, S, ingest
from tests.cloud.api_fixtures import TOKEN, client


def test_the_service_counts_what_edges_send(tmp_path: Path) -> None:
    config = CloudConfig.model_validate(
        {
            "port": 0,
            "data_dir": str(tmp_path),
            "api_tokens": {"dashboard": {"token": TOKEN}},
            "describer": {"enabled": False},
            "analytics": {"period_s": 0.1},
        }
    )
    app = create_app(config)
    store = app.state.services.store
    ingest(store, [])  # the edge's Hello: its camera
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    road = Road()
    road.add(1, CAR, (0.3, 0.2), (0.3, 0.8), T0, 6)
    road.add(2, CAR, (0.5, 0.8), (0.5, 0.2), T0 + S, 6)
    road.add(3, PERSON, (0.7, 0.3), (0.8, 0.9), T0, 8)
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        with client(f"http://127.0.0.1:{port}") as api:
            [camera] = api.get("/v1/cameras").json()["cameras"]
            assert api.put(f"/v1/cameras/{camera['id']}/scene", json=SCENE).json()["changed"]
            ingest(store, road.frames())
            items: list[dict[str, object]] = []
            while len(items) < 3 and time.monotonic() < deadline:
                items = api.get("/v1/events", params={"kind": "line_crossing"}).json()["items"]
                time.sleep(0.05)
            counts = api.get(
                "/v1/analytics/counts",
                params={"camera": camera["id"], "line": "gate", "from": T0 / 1e6,
                        "to": T0 / 1e6 + 60, "bucket": "1m"},
            ).json()  # fmt: skip
            metrics = api.get("/metrics").text
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()
    assert sorted((e["class_name"], e["direction"]) for e in items) == [
        ("car", "in"),
        ("car", "out"),
        ("person", "in"),
    ]
    assert counts["totals"] == {"in": 2, "out": 1}
    line = 'semcom_analytics_crossings_total{camera="edge-01/cam-a",class="car",direction="in",'
    assert f'{line}line="gate"}} 1.0' in metrics
