"""The edge's metrics read the pipeline's own counters; /metrics and /healthz over real HTTP.

The pipeline is the real one (policy, crops, the random-init test ViT, codec, outbox, spool)
behind a scripted detector; the listener is the real server on 127.0.0.1, port 0.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.capture import VideoFileSource
from edge.config import HealthConfig, PolicyConfig, TimmEncoderConfig, UplinkConfig, load_config
from edge.embed import TimmEncoder
from edge.errors import ConfigError, ListenFailed
from edge.health_server import HealthServer, open_health
from edge.metrics import EdgeMetrics, RateMeter
from edge.pipeline import EdgePipeline, Outbox
from edge.policy import EmissionPolicy
from edge.runner import EdgeRunner
from edge.sink import SpoolSink
from edge.spool import Spool
from edge.uplink import Uplink
from shared import limits
from shared.logformat import JsonFormatter
from shared.messages import Heartbeat
from shared.vectors import create_codec
from tests.edge.scrape import healthz, labelled, scrape
from tests.scripted import GroundTruthDetector

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"
)


@dataclass
class Edge:
    runner: EdgeRunner
    pipeline: EdgePipeline
    outbox: Outbox
    spool: Spool
    uplink: Uplink
    metrics: EdgeMetrics


@pytest.fixture
def edge(tiny_video: Path, tmp_path: Path) -> Iterator[Edge]:
    """A whole edge on the 30-frame test video, spooling for an uplink that never starts."""
    encoder = TimmEncoder(TimmEncoderConfig(name="test_vit", random_init=True, runtime="torch"))
    ladder = [create_codec("f16", encoder.dim), create_codec("int8", encoder.dim)]
    policy = EmissionPolicy(PolicyConfig(confirm_frames=3, lost_frames=5), "cam-01")
    pipeline = EdgePipeline(GroundTruthDetector(), encoder, ladder[0], policy, 2.5, ladder=ladder)
    spool = Spool(tmp_path / "spool.db")
    sink = SpoolSink(spool)
    config = UplinkConfig.model_validate(
        {"cloud": "http://127.0.0.1:9", "token": "t", "spool_path": tmp_path / "spool.db"}
    )
    uplink = Uplink(config, "edge-m", spool, lambda: sink.hello, ladder=["f16", "int8"])
    sink.on_append = uplink.spooled
    outbox = Outbox("edge-m", sink, times=pipeline.times)
    source = VideoFileSource(tiny_video, loop=False, pace=False, sample_fps=None)

    def hello(frame: object) -> None:
        outbox.put(0, pipeline.hello("test", frame, source.fps), control=True)  # type: ignore[arg-type]

    runner = EdgeRunner(source, pipeline, outbox, on_first_frame=hello)
    metrics = EdgeMetrics(outbox, runner=runner, pipeline=pipeline, uplink=uplink)
    yield Edge(runner, pipeline, outbox, spool, uplink, metrics)
    spool.close()


def test_metrics_are_the_pipelines_own_counters(edge: Edge) -> None:
    server = HealthServer(edge.metrics, "127.0.0.1", 0)
    try:
        edge.metrics.start(every_s=0.05)
        edge.metrics.phase = "running"
        stats = edge.runner.run(threading.Event())
        edge.metrics.sample()
        figures = scrape(server.url)
    finally:
        edge.metrics.stop()
        server.close()
    o, policy = edge.outbox.stats, edge.pipeline.policy.stats
    assert stats.frames == 30
    assert figures["semcom_edge_frames_captured_total"] == edge.runner.source.stats.frames == 30
    assert figures["semcom_edge_frames_processed_total"] == 30
    assert figures["semcom_edge_frames_dropped_total"] == stats.dropped_frames == 0
    assert labelled(figures, "semcom_edge_messages_total") == dict(o.messages)
    assert labelled(figures, "semcom_edge_message_bytes_total") == dict(o.bytes)
    assert {"Hello", "Embedding", "TrackSummary"} <= set(o.messages)
    # every data message sits in the spool (no uplink ran); Hello is control, never spooled
    assert figures["semcom_edge_spool_messages"] == edge.spool.pending == o.total_messages - 1
    assert figures["semcom_edge_spool_bytes"] == edge.spool.pending_bytes > 0
    assert figures["semcom_edge_tracks_started_total"] == policy.tracks_started == 2
    assert figures["semcom_edge_tracks_ended_total"] == 2  # flushed at the end of the file
    assert figures["semcom_edge_tracks_relinked_total"] == 0  # two tracks, both always seen
    assert figures["semcom_edge_tracks_active"] == 0
    assert figures["semcom_edge_uplink_connected"] == 0
    assert figures["semcom_edge_uplink_reconnects_total"] == 0
    assert figures['semcom_edge_codec_rung{rung="f16"}'] == 1
    assert figures['semcom_edge_state{state="running"}'] == 1
    # one histogram observation per StageTimes sample, stage by stage
    stages = edge.pipeline.times.percentiles()
    assert {"capture", "detect", "policy", "crop", "embed", "codec", "encode", "spool"} <= set(
        stages
    )
    for stage, summary in stages.items():
        count = figures[f'semcom_edge_stage_seconds_count{{stage="{stage}"}}']
        assert count == summary["count"], stage
    assert figures['semcom_edge_stage_seconds_count{stage="spool"}'] == edge.spool.pending
    assert figures["semcom_edge_pipeline_fps"] > 0
    assert figures["process_resident_memory_bytes"] > 0


def test_the_heartbeat_carries_the_same_figures(edge: Edge) -> None:
    edge.metrics.start(every_s=0.05)
    try:
        edge.runner.run(threading.Event())
        time.sleep(0.15)
    finally:
        edge.metrics.stop()
    beat = edge.uplink.heartbeat(time.monotonic())
    o, stats = edge.outbox.stats, edge.runner.stats
    health = beat.health
    assert len(health) <= limits.MAX_HEALTH_ENTRIES
    assert health["frames"] == stats.frames == 30
    assert health["dropped"] == 0
    assert health["messages"] == o.total_messages
    assert health["bytes"] == o.total_bytes
    assert health["tracks_started"] == 2
    assert health["acked"] == 0
    assert "ack_ms_p95" not in health  # nothing acknowledged yet
    # what the uplink reports of the spool agrees with the health figures' own reading
    assert beat.backlog == edge.spool.pending == o.total_messages - 1
    # the summary fits the wire as it is
    assert Heartbeat(0, 0.0, health=edge.metrics.summary()).health.keys() == health.keys()
    # acknowledgements (the uplink's hook) give the latency percentiles and the histogram
    for ms in (10.0, 20.0, 30.0, 40.0):
        assert edge.uplink.on_ack_latency is not None
        edge.uplink.on_ack_latency(ms)
    summary = edge.metrics.summary()
    assert summary["ack_ms_p50"] == pytest.approx(25.0)
    assert summary["ack_ms_p95"] == pytest.approx(38.5)
    figures = _collect(edge.metrics)
    assert figures["semcom_edge_uplink_ack_latency_seconds_count"] == 4
    assert figures["semcom_edge_uplink_ack_latency_seconds_sum"] == pytest.approx(0.1)


def _collect(metrics: EdgeMetrics) -> dict[str, float]:
    return {
        s.name: s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if not s.labels
    }


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_healthz_answers_200_only_while_frames_are_fresh(edge: Edge) -> None:
    clock = Clock()
    metrics = EdgeMetrics(
        edge.outbox, runner=edge.runner, uplink=edge.uplink, stale_after_s=5.0, clock=clock
    )
    server = HealthServer(metrics, "127.0.0.1", 0)
    try:
        status, body = healthz(server.url)
        assert (status, body["state"], body["ok"]) == (503, "starting", False)
        metrics.phase = "running"
        status, body = healthz(server.url)
        assert (status, body["state"], body["reason"]) == (
            503,
            "starting",
            "no frame processed yet",
        )
        edge.runner.stats.last_frame_at = clock.t - 0.5
        status, body = healthz(server.url)
        assert status == 200
        assert body == {
            "state": "running",
            "ok": True,
            "uptime_s": 0.0,
            "last_frame_age_s": 0.5,
            "uplink_connected": False,
            "uplink_state": "starting",
            "spool_depth": 0,
            "spool_bytes": 0,
            "codebook": "",  # none pushed by the cloud yet
            "codebook_set_aside": "",  # no kept codebook the cloud lacked
        }
        clock.t += 10.0
        status, body = healthz(server.url)
        assert (status, body["state"]) == (503, "running")
        assert body["reason"] == "no frame for 10.5 s (stale_after_s 5)"
        metrics.phase = "draining"
        status, body = healthz(server.url)
        assert (status, body["state"]) == (503, "draining")
        for path, method, code in (("/", "GET", 404), ("/metricsx", "GET", 404)):
            assert _status(f"{server.url}{path}", method) == code
        assert _status(f"{server.url}/healthz", "POST") == 405
        assert _status(f"{server.url}/metrics", "HEAD") == 405
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError, match="refused"):  # closed: nobody listens
        urllib.request.urlopen(f"{server.url}/healthz", timeout=2)


def _status(url: str, method: str) -> int:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_listener_is_off_by_default_and_loopback_unless_allowed(edge: Edge) -> None:
    base = {"source.uri": "x"}
    assert load_config(None, base, {}).health.listen is None
    assert open_health(HealthConfig(), edge.metrics) is None
    with pytest.raises(ConfigError) as info:
        load_config(None, base, {"SEMCOM_EDGE__HEALTH__LISTEN": "0.0.0.0:9108"})
    message = str(info.value)
    assert "health.listen" in message
    assert "0.0.0.0 is not a loopback address" in message
    assert "health.allow_remote: true" in message
    assert "environment variable SEMCOM_EDGE__HEALTH__LISTEN" in message
    remote = {
        "SEMCOM_EDGE__HEALTH__LISTEN": "0.0.0.0:9108",
        "SEMCOM_EDGE__HEALTH__ALLOW_REMOTE": "1",
    }
    assert load_config(None, base, remote).health.address == ("0.0.0.0", 9108)
    for bad, why in (
        ("::1:9108", "in brackets"),
        ("localhost:99999", "from 0 to 65535"),
        ("9108x", "is not HOST:PORT"),
        ("camera.local:9108", "names are not resolved"),
    ):
        with pytest.raises(ConfigError, match=why):
            load_config(None, {**base, "health.listen": bad}, {})
    assert load_config(None, {**base, "health.listen": "[::1]:0"}, {}).health.address == ("::1", 0)
    assert load_config(None, {**base, "health.listen": 9108}, {}).health.listen == "127.0.0.1:9108"


def test_a_busy_port_is_one_clear_error(edge: Edge) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = HealthConfig(listen=f"127.0.0.1:{port}")
        with pytest.raises(
            ListenFailed, match=rf"cannot serve /metrics and /healthz on 127.0.0.1:{port}"
        ):
            open_health(config, edge.metrics)


def test_ipv6_loopback(edge: Edge) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = HealthServer(edge.metrics, "::1", 0)
    except ListenFailed:
        pytest.skip("::1 is not configured here")
    try:
        assert server.url.startswith("http://[::1]:")
        assert healthz(server.url)[0] == 503
    finally:
        server.close()


def test_rate_meter_spans_its_window() -> None:
    meter = RateMeter(window_s=5.0)
    assert meter.rate() == 0.0
    for t in range(20):
        meter.add(float(t), 10.0 * t if t < 10 else 100.0 + 25.0 * (t - 10))
    assert meter.rate() == pytest.approx(25.0)  # the last 5 s only, not the whole run


def test_json_log_lines() -> None:
    record = logging.LogRecord("edge.x", logging.WARNING, __file__, 1, "spool %s", ("full",), None)
    record.frames = 50
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING"
    assert line["logger"] == "edge.x"
    assert line["message"] == "spool full"
    assert line["frames"] == 50
    assert line["ts"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("e", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exc"]
