"""The edge's own figures: Prometheus metrics (``semcom_edge_*``) and the heartbeat's summary.

Nothing is counted twice. The runner, the source, the emission policy, the outbox, the spool
and the uplink already count frames, tracks, messages, bytes, acknowledgements and reconnects
(for the status line, the run's summary and ``--report``); :class:`EdgeMetrics` reads those very
counters when ``/metrics`` is scraped (a custom collector) and when a heartbeat is made
(:meth:`EdgeMetrics.summary`). Only what no counter holds is kept here: each stage's duration
(a :class:`~edge.pipeline.StageTimes` observer) and each acknowledgement's latency
(``Uplink.on_ack_latency``) go into histograms, and rates (fps, goodput) come from the counters
sampled once a second by a small thread (:meth:`EdgeMetrics.start`).

Each agent has its own registry (no global state): ``semcom edge run`` and ``semcom edge
replay`` build one, :mod:`edge.health_server` serves it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector

from edge.metrics_families import Figures, copy_counter
from edge.pipeline import EdgePipeline, Outbox, StageTimes
from edge.runner import EdgeRunner
from edge.uplink import Uplink

Phase = Literal["starting", "running", "draining", "stopped"]
#: Stages of :class:`~edge.pipeline.StageTimes` (``track``: the detector's tracker update).
STAGES = ("capture", "detect", "track", "policy", "crop", "embed", "codec", "encode", "spool")
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Rates (fps, goodput) are over this many seconds of samples.
RATE_WINDOW_S = 5.0
#: Acknowledgement latencies the heartbeat's percentiles are taken over (the most recent).
ACK_WINDOW = 1_000


class RateMeter:
    """The per-second rate of a growing count over the last ``window_s`` seconds of samples."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def add(self, t: float, value: float) -> None:
        with self._lock:
            self._samples.append((t, value))
            # keep the newest sample at or before the window's start: spans cover the window
            while len(self._samples) > 2 and self._samples[1][0] <= t - self.window_s:
                self._samples.popleft()

    def rate(self) -> float:
        with self._lock:
            if len(self._samples) < 2:
                return 0.0
            (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return max(0.0, (v1 - v0) / (t1 - t0)) if t1 > t0 else 0.0


class EdgeMetrics:
    """Figures of one running agent: ``outbox`` always; ``runner`` and ``pipeline`` for
    ``semcom edge run`` (frames, tracks, stages); ``uplink`` when sending to a cloud (spool,
    link, acknowledgements). ``phase`` is set by whoever runs the agent."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        runner: EdgeRunner | None = None,
        pipeline: EdgePipeline | None = None,
        uplink: Uplink | None = None,
        stale_after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox, self.runner, self.pipeline, self.uplink = outbox, runner, pipeline, uplink
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.started = clock()
        self.phase: Phase = "starting"
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Histogram(
            "semcom_edge_stage_seconds",
            "Time per item in each pipeline stage (capture, detect, track: the tracker's "
            "update, policy, crop, embed: a batch, codec, encode, spool: the sink's write).",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.ack_latency_seconds = Histogram(
            "semcom_edge_uplink_ack_latency_seconds",
            "From sending a spooled message to the cloud's acknowledgement of it.",
            buckets=_ACK_BUCKETS,
            registry=self.registry,
        )
        self.capture_rate, self.pipeline_rate, self.goodput = RateMeter(), RateMeter(), RateMeter()
        self._acks: deque[float] = deque(maxlen=ACK_WINDOW)
        self._acks_lock = threading.Lock()
        ProcessCollector(registry=self.registry)  # process_*: CPU, memory, open files
        self.registry.register(Figures(self))
        for times in {id(t): t for t in _stage_times(outbox, pipeline)}.values():
            times.observers.append(self._observe_stage)
        if uplink is not None:
            uplink.on_ack_latency = self._observe_ack
            uplink.health = self.summary
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ observations

    def _observe_stage(self, stage: str, ms: float) -> None:
        self.stage_seconds.labels(stage).observe(ms / 1e3)

    def _observe_ack(self, ms: float) -> None:
        self.ack_latency_seconds.observe(ms / 1e3)
        with self._acks_lock:
            self._acks.append(ms)

    def sample(self) -> None:
        """Feed the rate meters from the counters (the sampling thread calls this)."""
        now = self.clock()
        if self.runner is not None:
            self.capture_rate.add(now, self.runner.source.stats.frames)
            self.pipeline_rate.add(now, self.runner.stats.frames)
        if self.uplink is not None:
            self.goodput.add(now, self.uplink.stats.acked_bytes)

    def start(self, every_s: float = 1.0) -> None:
        """Sample the rates every ``every_s`` seconds in a daemon thread until :meth:`stop`."""
        self.sample()

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.sample()

        self._thread = threading.Thread(target=loop, name="edge-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # ------------------------------------------------------------------ reading

    def last_frame_age(self) -> float | None:
        """Seconds since the last frame was processed (replay: the last message made)."""
        last = self.runner.stats.last_frame_at if self.runner else self.outbox.stats.last_at
        return None if last is None else max(0.0, self.clock() - last)

    def ack_percentiles(self) -> tuple[float, float] | None:
        """(p50, p95) in ms of the last :data:`ACK_WINDOW` acknowledgements; None before one."""
        with self._acks_lock:
            recent = np.asarray(self._acks, np.float64)
        if not recent.size:
            return None
        p50, p95 = np.percentile(recent, [50, 95])
        return float(p50), float(p95)

    def summary(self) -> dict[str, float]:
        """The heartbeat's ``health``: at most 16 figures (see docs/wire.md), from the same
        counters as ``/metrics``."""
        out: dict[str, float] = {"uptime_s": self.clock() - self.started}
        if self.runner is not None:
            s = self.runner.stats
            out |= {
                "capture_fps": self.capture_rate.rate(),
                "pipeline_fps": self.pipeline_rate.rate(),
                "frames": s.frames,
                "dropped": s.dropped_frames,
                "skipped": s.skipped_embeddings,
            }
        if self.pipeline is not None:
            policy = self.pipeline.policy
            out |= {
                "tracks_active": policy.active_tracks,
                "tracks_started": policy.stats.tracks_started,
            }
        messages, nbytes, refused = self.outbox.counts()
        out |= {
            "messages": sum(messages.values()),
            "bytes": sum(nbytes.values()),
            "refused": sum(refused.values()),
        }
        if self.uplink is not None:
            out |= {
                "acked": self.uplink.stats.acked_frames,
                "goodput_bytes_s": self.goodput.rate(),
                "evicted": sum(copy_counter(self.uplink.spool.dropped).values()),
            }
            acks = self.ack_percentiles()
            if acks is not None:
                out |= {"ack_ms_p50": acks[0], "ack_ms_p95": acks[1]}
        return {k: float(min(v, 3.0e38)) for k, v in out.items()}

    def health(self) -> tuple[bool, dict[str, object]]:
        """(healthy, what ``/healthz`` answers): healthy while the pipeline runs and its last
        frame is at most ``stale_after_s`` old."""
        age = self.last_frame_age()
        state: str = self.phase
        if state == "running" and age is None:
            state = "starting"
        if state == "running" and age is not None and age > self.stale_after_s:
            reason = f"no frame for {age:.1f} s (stale_after_s {self.stale_after_s:g})"
        else:
            reason = {
                "starting": "no frame processed yet",
                "draining": "the source ended: sending what is spooled",
                "stopped": "stopped",
            }.get(state, "")
        body: dict[str, object] = {
            "state": state,
            "ok": not reason,
            "uptime_s": round(self.clock() - self.started, 3),
            "last_frame_age_s": None if age is None else round(age, 3),
            "uplink_connected": None,
            "spool_depth": None,
            "spool_bytes": None,
        }
        if reason:
            body["reason"] = reason
        if self.uplink is not None:
            body["uplink_connected"] = self.uplink.stats.state == "connected"
            body["uplink_state"] = self.uplink.stats.state
            body["spool_depth"] = self.uplink.spool.pending
            body["spool_bytes"] = self.uplink.spool.pending_bytes
            body["codebook"] = self.uplink.stats.codebook  # pushed by the cloud ("": none)
            # a kept codebook the cloud did not have ("": none; see edge.codebook_fallback)
            body["codebook_set_aside"] = self.uplink.stats.codebook_set_aside
        return not reason, body


def _stage_times(outbox: Outbox, pipeline: EdgePipeline | None) -> list[StageTimes]:
    return [outbox.times] + ([pipeline.times] if pipeline is not None else [])
