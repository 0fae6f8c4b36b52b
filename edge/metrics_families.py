"""The collector of :class:`edge.metrics.EdgeMetrics`: the agent's counters read at scrape
time, as ``semcom_edge_*`` metric families (the histograms are registered apart)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from edge.metrics import EdgeMetrics
    from edge.pipeline import EdgePipeline
    from edge.runner import EdgeRunner
    from edge.uplink import Uplink

PHASES = ("starting", "running", "draining", "stopped")


def copy_counter(counter: Counter[Any]) -> dict[str, int]:
    """A copy of a counter another thread may add keys to (retried if it changes meanwhile)."""
    for _ in range(5):
        try:
            return {str(k): int(v) for k, v in list(counter.items())}
        except RuntimeError:  # changed size during iteration
            continue
    return {}


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _by(
    family: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    doc: str,
    label: str,
    values: Mapping[str, float],
) -> Metric:
    metric = family(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        metric.add_metric([key], value)
    return metric


class Figures(Collector):
    """Reads the agent's counters at scrape time (the histograms are registered apart)."""

    def __init__(self, metrics: EdgeMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield _by(
            GaugeMetricFamily,
            "semcom_edge_state",
            "The agent's phase (1: current): starting, running, draining, stopped.",
            "state",
            {p: float(p == m.phase) for p in PHASES},
        )
        yield _gauge(
            "semcom_edge_uptime_seconds", "Since the agent started.", m.clock() - m.started
        )
        age = m.last_frame_age()
        if age is not None:
            yield _gauge(
                "semcom_edge_last_frame_age_seconds",
                "Since the last frame was processed (replay: the last message made).",
                age,
            )
        if m.runner is not None:
            yield from _pipeline(m, m.runner)
        if m.pipeline is not None:
            yield from _tracks(m.pipeline)
        messages, nbytes, refused = m.outbox.counts()
        yield _by(
            CounterMetricFamily,
            "semcom_edge_messages_total",
            "Messages made (spooled or written), by message type.",
            "type",
            messages,
        )
        yield _by(
            CounterMetricFamily,
            "semcom_edge_message_bytes_total",
            "Encoded bytes of the messages made, by message type.",
            "type",
            nbytes,
        )
        yield _by(
            CounterMetricFamily,
            "semcom_edge_messages_refused_total",
            "Messages a full spool refused (it kept more important ones), by message type.",
            "type",
            refused,
        )
        if m.uplink is not None:
            yield from _spool(m.uplink)
            yield from _link(m, m.uplink)


def _pipeline(m: EdgeMetrics, runner: EdgeRunner) -> Iterator[Metric]:
    s = runner.stats
    yield _gauge(
        "semcom_edge_capture_fps", "Frames the source delivered per second.", m.capture_rate.rate()
    )
    yield _gauge("semcom_edge_pipeline_fps", "Frames processed per second.", m.pipeline_rate.rate())
    yield _counter(
        "semcom_edge_frames_captured_total",
        "Frames the source delivered.",
        runner.source.stats.frames,
    )
    yield _counter("semcom_edge_frames_processed_total", "Frames detected and tracked.", s.frames)
    yield _counter(
        "semcom_edge_frames_dropped_total",
        "Frames of a live source dropped because detection was busy.",
        s.dropped_frames,
    )
    yield _counter(
        "semcom_edge_embeddings_skipped_total",
        "Embedding requests skipped because the encoder was behind.",
        s.skipped_embeddings,
    )


def _tracks(pipeline: EdgePipeline) -> Iterator[Metric]:
    policy = pipeline.policy
    yield _counter(
        "semcom_edge_tracks_started_total", "Tracks confirmed.", policy.stats.tracks_started
    )
    yield _counter("semcom_edge_tracks_ended_total", "Tracks ended.", policy.stats.tracks_ended)
    yield _counter(
        "semcom_edge_tracks_relinked_total",
        "New tracker ids continuing a just-lost track (no first sight sent).",
        policy.stats.relinked,
    )
    yield _gauge("semcom_edge_tracks_active", "Tracks alive now.", policy.active_tracks)


def _spool(uplink: Uplink) -> Iterator[Metric]:
    spool = uplink.spool
    yield _gauge("semcom_edge_spool_messages", "Messages spooled for the cloud.", spool.pending)
    yield _gauge("semcom_edge_spool_bytes", "Bytes of the messages spooled.", spool.pending_bytes)
    yield _gauge(
        "semcom_edge_spool_quarantined",
        "Messages the cloud refused, kept aside.",
        spool.quarantined,
    )
    yield _by(
        CounterMetricFamily,
        "semcom_edge_spool_evicted_total",
        "Spooled messages dropped to make room for more important ones, by priority.",
        "priority",
        copy_counter(spool.dropped),
    )


def _link(m: EdgeMetrics, uplink: Uplink) -> Iterator[Metric]:
    s = uplink.stats
    yield _gauge(
        "semcom_edge_uplink_connected", "1 while a session is open.", float(s.state == "connected")
    )
    yield _counter("semcom_edge_uplink_connects_total", "Sessions opened.", s.connects)
    yield _counter(
        "semcom_edge_uplink_reconnects_total",
        "Sessions opened after the first (as the heartbeat reports).",
        max(0, s.connects - 1),
    )
    yield _by(
        CounterMetricFamily,
        "semcom_edge_uplink_failures_total",
        "Sessions that failed, by error.",
        "error",
        copy_counter(s.failures),
    )
    yield _counter(
        "semcom_edge_uplink_sent_messages_total", "Messages sent (repeats too).", s.sent_frames
    )
    yield _counter(
        "semcom_edge_uplink_sent_bytes_total", "Bytes sent (batches, repeats too).", s.sent_bytes
    )
    yield _counter(
        "semcom_edge_uplink_acked_messages_total",
        "Messages the cloud acknowledged.",
        s.acked_frames,
    )
    yield _counter(
        "semcom_edge_uplink_acked_bytes_total", "Bytes the cloud acknowledged.", s.acked_bytes
    )
    yield _gauge(
        "semcom_edge_uplink_goodput_bytes_per_second",
        "Acknowledged bytes per second.",
        m.goodput.rate(),
    )
    yield _gauge(
        "semcom_edge_uplink_delivered_bits_per_second",
        "What the link delivers, as the codec ladder estimates it (the heartbeat's rate).",
        s.delivered_bps,
    )
    if uplink.rung_known or uplink.codebook:
        yield _by(
            GaugeMetricFamily,
            "semcom_edge_codec_rung",
            "The ladder rung (codec id) embeddings use now (1).",
            "rung",
            {uplink.codebook or uplink.ladder.codec: 1.0},
        )
    if s.codebook:
        yield _by(
            GaugeMetricFamily,
            "semcom_edge_codebook",
            "The codebook the cloud pushed that embeddings use (codec id and hash prefix) (1).",
            "codebook",
            {s.codebook: 1.0},
        )
    if s.codebook_set_aside:
        yield _by(
            GaugeMetricFamily,
            "semcom_edge_codebook_set_aside",
            "A kept codebook the cloud did not have, set aside: embeddings went back to a "
            "universal rung, those coded with it are quarantined (codec id and hash prefix) (1).",
            "codebook",
            {s.codebook_set_aside: 1.0},
        )
