"""A running edge reports its health: its own /metrics and /healthz, and the cloud's view of it.

Real processes on 127.0.0.1 (:mod:`semcom.bench.procs`): ``semcom cloud serve``, and
``semcom edge replay --synthetic`` (no detector: runs in CI) or ``semcom edge run`` on the team's
clip with the real YOLO11n (``realdata``). Each edge's health listener is scraped while it runs;
the figures must move, agree with what the run says at its end (exactly: they are read from
the same counters), and the cloud's ``GET /v1/edges/{id}`` must show what the edge's heartbeats
reported, bracketed by two scrapes taken around a heartbeat's arrival. Faults are real: the
cloud process is paused (SIGSTOP: the edge times out and reconnects) and killed (the edge spools
and drains in vain); the edge's figures are compared with its summary while it drains.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import yaml

from semcom.bench.procs import (
    EDGE_TOKEN_ENV,
    Child,
    Children,
    CloudChild,
    CloudSpec,
    EdgeChild,
    EdgeSpec,
    SyntheticStream,
    free_port,
)
from tests.edge.scrape import healthz, labelled, scrape

pytestmark = pytest.mark.uplink

T = TypeVar("T")
EDGE = "edge-health"
TOKEN = "edge-health-token"
API_TOKEN = "bench-api-token"  # CloudSpec's default API client
#: uplink settings that make faults quick to notice and to recover from
FAST_LINK = {
    "transport": "websocket",
    "heartbeat_s": 0.5,
    "timeout_s": 2.0,
    "connect_timeout_s": 2.0,
    "reconnect_initial_s": 0.2,
    "reconnect_max_s": 0.5,
    "drain_timeout_s": 2.5,
}
HEALTH_LINE = re.compile(r"edge health on (http://127\.0\.0\.1:\d+) \(")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 20.0) -> T:
    """``probe()``'s first truthy answer, polled every 50 ms."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = probe()
        if answer:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def health_url(child: Child) -> str:
    def found() -> str | None:
        assert child.alive, f"{child.name} exited:\n{child.log_tail()}"
        match = HEALTH_LINE.search(child.log_since_start())
        return match.group(1) if match else None

    return wait_for(f"{child.name}'s health listener", found, 60.0)


def edge_view(cloud: CloudChild, edge_id: str = EDGE) -> dict[str, Any] | None:
    """``GET /v1/edges/{edge_id}`` (None: 404, the cloud has not heard of it)."""
    request = urllib.request.Request(
        f"{cloud.url}/v1/edges/{edge_id}", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def f32(x: float) -> float:
    return float(np.float32(x))


def heartbeat_between(cloud: CloudChild, url: str, keys: dict[str, str]) -> dict[str, Any]:
    """The cloud's view of the edge from a heartbeat made after a first scrape, and checked to
    lie between that scrape and a second one, for each health name -> metric in ``keys``
    (counts only grow; float32 on the wire, so the bounds are rounded alike)."""
    before = scrape(url)
    asked = time.time()

    def fresh() -> dict[str, Any] | None:
        view = edge_view(cloud)
        if view is None or view["last_heartbeat"] is None:
            return None
        # built after ``before`` was read: heartbeats take far less than 0.5 s to arrive
        arrived = datetime.fromisoformat(view["last_heartbeat"].replace("Z", "+00:00"))
        return view if arrived.timestamp() > asked + 0.5 else None

    view = wait_for("a heartbeat after the scrape", fresh, 10.0)
    after = scrape(url)
    for name, metric in keys.items():
        low, high = f32(total(before, metric)), f32(total(after, metric))
        assert low <= view["health"][name] <= high, (name, low, view["health"][name], high)
    assert f32(before["semcom_edge_uptime_seconds"]) <= view["health"]["uptime_s"]
    assert view["health"]["uptime_s"] <= f32(after["semcom_edge_uptime_seconds"])
    reconnects = (before["semcom_edge_uplink_reconnects_total"], view["reconnects"])
    assert reconnects[0] == reconnects[1] == after["semcom_edge_uplink_reconnects_total"]
    return view


def total(figures: dict[str, float], name: str) -> float:
    """A metric's value, summed over its labels."""
    plain = figures.get(name)
    return plain if plain is not None else sum(labelled(figures, name).values())


def json_lines(child: Child) -> list[dict[str, Any]]:
    """Every line the child wrote: each must be one JSON object (``--log-format json``)."""
    return [json.loads(line) for line in child.log_since_start().splitlines() if line.strip()]


# ---------------------------------------------------------------- replay (CI)

REPLAY_KEYS = {
    "messages": "semcom_edge_messages_total",
    "bytes": "semcom_edge_message_bytes_total",
    "acked": "semcom_edge_uplink_acked_messages_total",
}


def test_a_replaying_edge_reports_its_health(tmp_path: Path) -> None:
    with Children() as children:
        cloud = CloudChild(CloudSpec(tmp_path / "cloud", free_port(), {EDGE: TOKEN}))
        children.add(cloud)
        cloud.start()
        cloud.wait_ready()
        spec = EdgeSpec(EDGE, cloud.url, TOKEN, tmp_path / "edge", uplink=FAST_LINK)
        edge = EdgeChild(spec, SyntheticStream(seconds=20.0, tracks_per_s=4.0, dim=64))
        assert edge.env is not None
        edge.env |= {"SEMCOM_EDGE__HEALTH__LISTEN": "127.0.0.1:0", "SEMCOM_LOG_FORMAT": "json"}
        children.add(edge)
        edge.start()
        url = health_url(edge)

        # 1. connected, messages flowing and acknowledged
        first = wait_for(
            "acknowledged messages",
            lambda: (f := scrape(url))["semcom_edge_uplink_acked_messages_total"] > 0 and f,
        )
        assert first["semcom_edge_uplink_connected"] == 1
        assert first["semcom_edge_uplink_connects_total"] == 1
        assert first['semcom_edge_state{state="running"}'] == 1
        assert healthz(url)[0] == 200
        time.sleep(1.0)
        later = scrape(url)
        for name in (*REPLAY_KEYS.values(), "semcom_edge_uplink_sent_bytes_total"):
            assert total(later, name) > total(first, name) > 0, name
        assert "semcom_edge_frames_processed_total" not in later  # a replay has no frames

        # 2. the cloud stops answering: the edge times out, spools, says so, keeps running
        cloud.send(signal.SIGSTOP)
        try:
            down = wait_for(
                "the edge to notice",
                lambda: (f := scrape(url))["semcom_edge_uplink_connected"] == 0 and f,
            )
            assert total(down, "semcom_edge_uplink_failures_total") >= 1
            depth = down["semcom_edge_spool_messages"]
            wait_for(
                "the spool to grow",
                lambda: scrape(url)["semcom_edge_spool_messages"] > depth + 5,
            )
            status, body = healthz(url)
            assert (status, body["state"], body["uplink_connected"]) == (200, "running", False)
        finally:
            cloud.send(signal.SIGCONT)

        # 3. back: one reconnect, the backlog drains, the cloud sees the same figures
        wait_for(
            "a reconnect and the drained backlog",
            lambda: (
                (f := scrape(url))["semcom_edge_uplink_reconnects_total"] >= 1
                and f["semcom_edge_uplink_connected"] == 1
                and f["semcom_edge_spool_messages"] < 20
            ),
        )
        view = heartbeat_between(cloud, url, REPLAY_KEYS)
        assert (view["connected"], view["transport"]) == (True, "websocket")
        assert view["reconnects"] >= 1
        assert view["health"]["ack_ms_p95"] >= view["health"]["ack_ms_p50"] > 0
        assert not {"frames", "capture_fps", "dropped"} & set(view["health"])

        # 4. the cloud dies; the stream ends; the edge drains in vain: its last figures
        cloud.kill()
        wait_for("the end of the stream", lambda: healthz(url)[1]["state"] == "draining", 30.0)
        final = scrape(url)
        status, body = healthz(url)
        assert (status, body["ok"], body["spool_depth"]) == (
            503,
            False,
            final["semcom_edge_spool_messages"],
        )
        assert edge.wait(30.0) == 0, edge.log_tail()

    assert edge.report_path is not None
    report = json.loads(edge.report_path.read_text())
    link = report["uplink"]
    messages = labelled(final, "semcom_edge_messages_total")
    assert messages.pop("Hello") == 1  # announced once, never spooled
    assert messages == report["messages"]
    assert total(final, "semcom_edge_message_bytes_total") == report["bytes"]
    assert total(final, "semcom_edge_messages_refused_total") == report["refused"] == 0
    assert final["semcom_edge_spool_messages"] == report["left_in_spool"] > 0
    assert final["semcom_edge_uplink_acked_messages_total"] == link["acked_frames"]
    assert final["semcom_edge_uplink_acked_bytes_total"] == link["acked_bytes"]
    assert final["semcom_edge_uplink_sent_bytes_total"] == link["sent_bytes"]
    assert final["semcom_edge_uplink_connects_total"] == link["connects"] >= 2
    assert final["semcom_edge_uplink_reconnects_total"] == link["connects"] - 1
    failed = labelled(final, "semcom_edge_uplink_failures_total")  # still trying while draining
    assert set(failed) == set(link["failures"])
    assert all(0 < failed[k] <= link["failures"][k] for k in failed)
    acked = final["semcom_edge_uplink_acked_messages_total"]
    assert final["semcom_edge_uplink_ack_latency_seconds_count"] == acked
    lines = json_lines(edge)  # every line a JSON object, the summary the last
    assert lines[-1]["summary"]["left_in_spool"] == report["left_in_spool"]
    assert {"ts", "level", "logger", "message"} <= set(lines[0])


# ---------------------------------------------------------------- edge run (team data)

RUN_KEYS = {
    "frames": "semcom_edge_frames_processed_total",
    "dropped": "semcom_edge_frames_dropped_total",
    "messages": "semcom_edge_messages_total",
    "bytes": "semcom_edge_message_bytes_total",
    "acked": "semcom_edge_uplink_acked_messages_total",
    "tracks_started": "semcom_edge_tracks_started_total",
}
FRAMES = 300  # 12 s of the 25 fps clip, paced like a camera


def _edge_run(shared_data: Path, tmp_path: Path, cloud: CloudChild) -> Child:
    """``semcom edge run`` on the clip with the team's YOLO11n int8 (imported by name, as an
    operator does) and the tiny random-init test ViT, to ``cloud`` over a WebSocket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMCOM_EDGE__")}
    env |= {
        EDGE_TOKEN_ENV: TOKEN,
        "SEMCOM_MODELS_DIR": str(tmp_path / "models"),
        "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"),
        "SEMCOM_LOG_FORMAT": "json",
    }
    weights = shared_data / "weights" / "yolo11n_int8_coco_320.onnx"
    semcom = [sys.executable, "-m", "semcom"]
    imported = subprocess.run(
        [*semcom, "models", "import", str(weights), "--as", "yolo11n-int8-320"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    workdir = tmp_path / "edge"
    workdir.mkdir()
    config = workdir / "edge.yaml"
    uplink = {"cloud": cloud.url, "spool_path": str(workdir / "spool.db"), **FAST_LINK}
    config.write_text(yaml.safe_dump({"edge_id": EDGE, "uplink": uplink}))
    argv = [*semcom, "--log-level", "info", "edge", "run", "--config", str(config)]
    argv += ["--health-listen", "127.0.0.1:0"]  # the flag for health.listen
    argv += ["--source", str(shared_data / "videos" / "cars_kraten.mp4")]
    argv += ["--detector", "yolo11n-int8-320", "--encoder", "test_vit", "--random-init-encoder"]
    argv += ["--encoder-runtime", "torch", "--max-frames", str(FRAMES), "--no-status"]
    return Child("edge-run", argv, workdir / "edge.log", env=env, cwd=workdir)


@pytest.mark.realdata
def test_an_edge_on_a_real_clip_reports_its_health(shared_data: Path, tmp_path: Path) -> None:
    with Children() as children:
        cloud = CloudChild(CloudSpec(tmp_path / "cloud", free_port(), {EDGE: TOKEN}))
        children.add(cloud)
        cloud.start()
        edge = children.add(_edge_run(shared_data, tmp_path, cloud))
        cloud.wait_ready()
        edge.start()
        url = health_url(edge)

        # 1. frames captured and processed, messages made, spooled and acknowledged
        first = wait_for(
            "processed and acknowledged frames",
            lambda: (
                (f := scrape(url))["semcom_edge_uplink_acked_messages_total"] > 0
                and f["semcom_edge_frames_processed_total"] > 0
                and f
            ),
            60.0,
        )
        assert healthz(url)[0] == 200
        time.sleep(1.5)
        later = scrape(url)
        for name in ("semcom_edge_frames_captured_total", *RUN_KEYS.values()):
            if name != "semcom_edge_frames_dropped_total":
                assert total(later, name) >= total(first, name), name
        for name in ("semcom_edge_frames_processed_total", "semcom_edge_messages_total"):
            assert total(later, name) > total(first, name), name
        assert 5 < later["semcom_edge_capture_fps"] <= 26  # the clip's 25 fps, paced
        assert 0 < later["semcom_edge_pipeline_fps"] <= later["semcom_edge_capture_fps"] + 1
        for stage in ("capture", "detect", "track", "policy", "encode", "spool"):
            assert later[f'semcom_edge_stage_seconds_count{{stage="{stage}"}}'] > 0, stage

        # 2. the cloud's view: what the heartbeats carried
        view = heartbeat_between(cloud, url, RUN_KEYS)
        assert 0 < view["health"]["capture_fps"] <= 26
        assert view["health"]["tracks_active"] >= 0

        # 3. the cloud dies: the pipeline goes on, the spool grows
        cloud.kill()
        down = wait_for(
            "the edge to notice",
            lambda: (f := scrape(url))["semcom_edge_uplink_connected"] == 0 and f,
        )
        wait_for(
            "the spool to grow",
            lambda: scrape(url)["semcom_edge_spool_messages"] > down["semcom_edge_spool_messages"],
        )

        # 4. the clip ends; the edge drains in vain; its last figures against its summary
        wait_for("the end of the clip", lambda: healthz(url)[1]["state"] == "draining", 60.0)
        final = scrape(url)
        assert edge.wait(30.0) == 0, edge.log_tail()

    summary = json_lines(edge)[-1]["summary"]
    uplink = summary["uplink"]
    scraped = {
        "frames": final["semcom_edge_frames_processed_total"],
        "captured": final["semcom_edge_frames_captured_total"],
        "dropped_frames": final["semcom_edge_frames_dropped_total"],
        "skipped_embeddings": final["semcom_edge_embeddings_skipped_total"],
        "messages": labelled(final, "semcom_edge_messages_total"),
        "bytes": labelled(final, "semcom_edge_message_bytes_total"),
        "tracks_started": final["semcom_edge_tracks_started_total"],
        "tracks_ended": final["semcom_edge_tracks_ended_total"],
        "acked_frames": final["semcom_edge_uplink_acked_messages_total"],
        "connects": final["semcom_edge_uplink_connects_total"],
        "spool_messages": final["semcom_edge_spool_messages"],
    }
    print("\nscraped while draining:", json.dumps(scraped))
    print("the run's summary:     ", json.dumps(summary))
    for key in ("frames", "captured", "dropped_frames", "skipped_embeddings", "messages"):
        assert scraped[key] == summary[key], key
    assert scraped["bytes"] == summary["bytes"]
    assert (scraped["tracks_started"], scraped["tracks_ended"]) == (
        summary["tracks_started"],
        summary["tracks_ended"],
    )
    assert scraped["tracks_started"] > 0  # cars on the road
    assert scraped["captured"] == scraped["frames"] + scraped["dropped_frames"] == FRAMES
    assert scraped["acked_frames"] == uplink["acked_frames"] > 0
    assert scraped["connects"] == uplink["connects"] == 1
    # everything made but the Hello was spooled; what the cloud acknowledged left the spool
    spooled = sum(summary["messages"].values()) - summary["messages"]["Hello"]
    assert scraped["spool_messages"] == spooled - uplink["acked_frames"] > 0
