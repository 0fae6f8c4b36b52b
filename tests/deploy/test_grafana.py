"""deploy/grafana/semcom.json: every query names metrics that exist.

Cloud metrics: the registry of a real app (``create_app``: CloudMetrics plus the query API's,
the token check's and the describer's metrics, all on one registry), as Prometheus names its
series (a counter ``x`` is ``x_total``, a histogram ``x_bucket``/``x_sum``/``x_count``).
Edge metrics: those of the edge agent's own /metrics endpoint (edge/metrics.py,
edge/metrics_families.py), listed here (EDGE_METRICS) because most exist only while an agent
runs (its collector reads the pipeline and the uplink at scrape time); a test checks the list
against the edge's source.

The cloud also exports semcom_edge_* gauges, from the edges' heartbeats, and one name is on
both sides: semcom_edge_spool_bytes. Every selector of the dashboard therefore names its job
(``$cloud_job`` or ``$edge_job``), so no query mixes the two.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "semcom.json"

#: The edge agent's metric families: name -> Prometheus type (counters without ``_total``).
EDGE_METRICS = {
    "semcom_edge_state": "gauge",  # label state: 1 for the current phase
    "semcom_edge_uptime_seconds": "gauge",
    "semcom_edge_last_frame_age_seconds": "gauge",
    "semcom_edge_capture_fps": "gauge",
    "semcom_edge_pipeline_fps": "gauge",
    "semcom_edge_frames_captured": "counter",
    "semcom_edge_frames_processed": "counter",
    "semcom_edge_frames_dropped": "counter",
    "semcom_edge_embeddings_skipped": "counter",
    "semcom_edge_tracks_started": "counter",
    "semcom_edge_tracks_ended": "counter",
    "semcom_edge_tracks_active": "gauge",
    "semcom_edge_messages": "counter",  # label type: message type
    "semcom_edge_message_bytes": "counter",  # label type
    "semcom_edge_messages_refused": "counter",  # label type
    "semcom_edge_spool_messages": "gauge",
    "semcom_edge_spool_bytes": "gauge",  # the cloud has this name too (heartbeat, label edge)
    "semcom_edge_spool_quarantined": "gauge",
    "semcom_edge_spool_evicted": "counter",  # label priority
    "semcom_edge_uplink_connected": "gauge",
    "semcom_edge_uplink_connects": "counter",
    "semcom_edge_uplink_reconnects": "counter",
    "semcom_edge_uplink_failures": "counter",  # label error
    "semcom_edge_uplink_sent_messages": "counter",
    "semcom_edge_uplink_sent_bytes": "counter",
    "semcom_edge_uplink_acked_messages": "counter",
    "semcom_edge_uplink_acked_bytes": "counter",
    "semcom_edge_uplink_goodput_bytes_per_second": "gauge",
    "semcom_edge_uplink_delivered_bits_per_second": "gauge",
    "semcom_edge_codec_rung": "gauge",  # label rung: 1 for the codec in use
    "semcom_edge_stage_seconds": "histogram",  # label stage
    "semcom_edge_uplink_ack_latency_seconds": "histogram",
}
#: Names both the cloud (from heartbeats) and the edge export.
SHARED_NAMES = {"semcom_edge_spool_bytes"}

#: What the dashboard must show of the cloud (the metrics an operator looks at first).
REQUIRED_CLOUD = {
    "semcom_frames_received_total",
    "semcom_frames_stored_total",
    "semcom_bytes_received_total",
    "semcom_ingest_lag_seconds",
    "semcom_edge_backlog",
    "semcom_writer_pending_frames",
    "semcom_commit_seconds_bucket",
    "semcom_index_vectors",
    "semcom_index_missing_vectors",
    "semcom_query_seconds_bucket",
    "semcom_edge_reconnects",
    "semcom_edge_spool_bytes",
}

#: What the dashboard must show of the edges (the brief of its edge row).
EDGE_SHOWN = {
    "semcom_edge_capture_fps",
    "semcom_edge_frames_dropped",
    "semcom_edge_messages",
    "semcom_edge_message_bytes",
    "semcom_edge_spool_messages",
    "semcom_edge_spool_bytes",
    "semcom_edge_codec_rung",
    "semcom_edge_uplink_reconnects",
    "semcom_edge_uplink_goodput_bytes_per_second",
    "semcom_edge_uplink_ack_latency_seconds",
}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}


def series_names(families: dict[str, str]) -> set[str]:
    """Series names Prometheus scrapes for metric families {name: type}."""
    return {name + suffix for name, kind in families.items() for suffix in _SUFFIXES[kind]}


@pytest.fixture(scope="module")
def cloud_series(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    from cloud.app import create_app
    from cloud.config import CloudConfig, with_tokens

    config = with_tokens(CloudConfig(data_dir=tmp_path_factory.mktemp("cloud")), {}, {"t": "x"})
    app = create_app(config)  # no lifespan: nothing starts, every metric is registered
    try:
        registry = app.state.services.metrics.registry
        families = {m.name: m.type for m in registry.collect()}
    finally:
        app.state.services.engine.dispose()
    return series_names(families)


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in data["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


_NOT_METRICS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, label matchers, ranges,
    grouping clauses and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w$.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[m.end() :].lstrip().startswith("(") or m.group(0).lower() in _NOT_METRICS:
            continue
        names.add(m.group(0))
    return names


def test_metric_names_parser() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(semcom_query_seconds_bucket{job=~"a",'
        ' route!="/x"}[$__rate_interval]))) + 8 * max without (edge) (semcom_edge_backlog)'
    )
    assert metric_names(expr) == {"semcom_query_seconds_bucket", "semcom_edge_backlog"}


def test_edge_names_shared_with_the_cloud_are_known(cloud_series: set[str]) -> None:
    """The cloud has semcom_edge_* gauges of its own (from heartbeats); a name on both sides
    is told apart by its job only."""
    assert series_names(EDGE_METRICS) & cloud_series == SHARED_NAMES
    assert all(name.startswith("semcom_edge_") for name in EDGE_METRICS)


def test_edge_names_exist_in_the_edge_source() -> None:
    """Every edge metric the dashboard uses is one the edge agent defines."""
    sources = sorted((ROOT / "edge").glob("metrics*.py"))
    if not sources:
        pytest.skip("the edge agent's metrics (edge/metrics*.py) are not in this checkout")
    text = "\n".join(p.read_text() for p in sources)
    defined = set(re.findall(r'"(semcom_edge_[a-z0-9_]+)"', text))
    for name, kind in EDGE_METRICS.items():
        spelled = {name, f"{name}_total"} if kind == "counter" else {name}
        assert spelled & defined, f"{name} is not defined in edge/metrics*.py"


def selectors(expr: str) -> Iterator[tuple[str, str]]:
    """(metric name, its label matchers) of every selector in a PromQL expression."""
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?", text):
        rest = text[m.end() :].lstrip()
        if rest.startswith("(") or m.group(1).lower() in _NOT_METRICS:
            continue
        yield m.group(1), m.group(2) or ""


def test_every_selector_names_its_job(cloud_series: set[str]) -> None:
    edge = series_names(EDGE_METRICS)
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            for name, matchers in selectors(target["expr"]):
                if name in cloud_series and name not in SHARED_NAMES:
                    assert 'job=~"$cloud_job"' in matchers, f"{panel['title']}: {name}"
                elif name in edge and name not in SHARED_NAMES:
                    assert 'job=~"$edge_job"' in matchers, f"{panel['title']}: {name}"
                else:
                    assert re.search(r'job=~"\$(cloud|edge)_job"', matchers), panel["title"]


def test_every_expression_names_existing_metrics(cloud_series: set[str]) -> None:
    known = cloud_series | series_names(EDGE_METRICS)
    data = dashboard()
    used: set[str] = set()
    for panel in panels(data):
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: {target['expr']}"
            assert names <= known, f"{panel['title']}: unknown {sorted(names - known)}"
            used |= names
    for variable in data["templating"]["list"]:
        if variable["type"] == "query":
            m = re.fullmatch(
                r"label_values\((?:([\w:]+)(?:\{[^}]*\})?\s*,\s*)?(\w+)\)", variable["definition"]
            )
            assert m, variable["definition"]
            assert m.group(1) in known, variable["name"]
    assert not REQUIRED_CLOUD - used, sorted(REQUIRED_CLOUD - used)
    edge_used = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used} & set(EDGE_METRICS)
    assert not EDGE_SHOWN - edge_used, sorted(EDGE_SHOWN - edge_used)


def test_dashboard_is_importable() -> None:
    data = dashboard()
    assert data["uid"]
    assert data["title"]
    ids = [p["id"] for p in panels(data)]
    assert len(ids) == len(set(ids))
    refs = {v["name"] for v in data["templating"]["list"]}
    for panel in panels(data):
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                for var in re.findall(r"\$(\w+)", target["expr"]):
                    assert var in refs or var.startswith("__"), f"{panel['title']}: ${var}"
