"""Composition root of ``semcom edge replay``: send a message stream without a camera.

The stream is a recorded message file, the synthetic scene of :mod:`edge.loadgen`, or nothing
(``drain``: just send what an earlier run left in the spool). A recorded file is announced
with its own Hello (detector, encoder, dim, cameras, random-init flag; codecs from the ladder),
so its embeddings land in their encoder's space. A drain announces no Hello of its own: the
spool kept the Hello each frame was made under, and the uplink sends every frame under
exactly that one (see :mod:`edge.groups`). Everything else is the real uplink: spool,
outbox, transport, acks, rate control.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge.config import HealthConfig, UplinkConfig
from edge.errors import UplinkRejected
from edge.health_server import open_health
from edge.loadgen import CodecChoice, SceneSpec, SyntheticScene, recorded_hello, replay_file
from edge.metrics import EdgeMetrics
from edge.pipeline import Outbox
from edge.ratecontrol import EMBEDDING_OVERHEAD
from edge.sink import SpoolSink
from edge.spool import Spool
from edge.uplink import Uplink
from edge.uplink_thread import UplinkThread
from shared.vectors import CodecSet, create_codec

logger = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    edge_id: str
    source: str
    started_us: int = 0  # wall clock when the uplink started (codec_steps t_s count from it)
    elapsed_s: float = 0.0
    messages: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    refused: int = 0
    left_in_spool: int = 0
    quarantined: int = 0  # frames the cloud refused, kept aside in the spool
    uplink: dict[str, object] = field(default_factory=dict)
    ack_latency_ms: dict[str, float] = field(default_factory=dict)
    #: send -> ack latency (ms, 3 significant digits) -> count: mergeable across edges
    ack_latency_hist: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        out = dict(self.__dict__)
        out["messages"] = dict(self.messages)
        return json.dumps(out, indent=2, default=str)


def latency_histogram(latencies_ms: np.ndarray) -> dict[str, int]:
    """Latencies rounded to 3 significant digits (1 % resolution) -> count, in order."""
    rounded = Counter(float(f"{ms:.3g}") for ms in latencies_ms.tolist())
    return {f"{ms:g}": n for ms, n in sorted(rounded.items())}


def run_replay(
    edge_id: str,
    config: UplinkConfig,
    software_version: str,
    *,
    file: Path | None = None,
    scene: SceneSpec | None = None,
    seconds: float = 30.0,
    dim: int = 768,
    codebooks: tuple[Path, ...] = (),
    rate: float | None = None,
    stop: threading.Event | None = None,
    health: HealthConfig | None = None,
) -> ReplayReport:
    """Send the stream; ``health``: the local /metrics and /healthz listener (off: None or
    without ``listen``), figures of the outbox, spool and uplink (there are no frames)."""
    stop = stop or threading.Event()
    recorded = recorded_hello(file) if file is not None else None
    if recorded is not None:  # the file's encoder and dim, not a synthetic space
        dim = recorded.embedding_dim
    ladder = [create_codec(spec, dim) for spec in (config.ladder or ("f16",))]
    choice = CodecChoice(ladder)
    spool = Spool(config.spool_path, config.spool_max_bytes)
    sink = SpoolSink(spool)
    outbox = Outbox(edge_id, sink)
    source = str(file) if file else ("synthetic" if scene else "drain")
    drain_only = file is None and scene is None
    report = ReplayReport(edge_id, source, time.time_ns() // 1_000)
    link = Uplink(
        config,
        edge_id,
        spool,
        lambda: sink.hello,
        ladder=[c.codec_id for c in ladder],
        rung_bytes=[c.code_bytes + EMBEDDING_OVERHEAD for c in ladder],
        on_adapt=choice.adapt,
    )
    sink.on_append = link.spooled
    choice.pick_rung = link.ladder.pick
    health = health or HealthConfig()
    metrics = EdgeMetrics(outbox, uplink=link, stale_after_s=health.stale_after_s)
    try:
        server = open_health(health, metrics)
    except BaseException:
        spool.close()
        raise
    metrics.start()
    thread = UplinkThread(link, on_fatal=lambda _exc: stop.set())
    if not drain_only:  # a drain sends each frame under the Hello the spool kept with it
        hello = choice.hello(software_version, "cam-synth")
        if recorded is not None:
            hello = replace(recorded, software_version=software_version, codecs=hello.codecs)
        outbox.put(time.time_ns() // 1_000, hello, control=True)
    thread.start()
    start = time.monotonic()
    metrics.phase = "draining" if drain_only else "running"
    try:
        if file is not None:
            known = CodecSet([*ladder])
            for path in codebooks:
                known.add(create_codec(str(path), dim))
            for codec_id in ("f32", "f16", "int8"):
                known.add(create_codec(codec_id, dim))
            report.messages = replay_file(file, outbox, choice, known, stop, rate)
        elif scene is not None:
            generator = SyntheticScene(scene, choice)
            generator.run(outbox, seconds, stop)
            report.messages = generator.sent
        drain = 0.0 if stop.is_set() else config.drain_timeout_s
        if drain:
            logger.info("stream done: draining %d spooled messages", spool.pending)
        metrics.phase = "draining"
        thread.stop(drain, interrupt=stop)
    finally:
        thread.stop(0.0)
        metrics.phase = "stopped"
        metrics.stop()
        if server is not None:
            server.close()
        report.elapsed_s = round(time.monotonic() - start, 3)
        report.bytes = outbox.stats.total_bytes
        report.refused = sum(outbox.stats.refused.values())
        report.left_in_spool = spool.pending
        report.quarantined = spool.quarantined
        report.uplink = link.stats.snapshot()
        lat = np.asarray(link.stats.ack_latency_ms)
        if lat.size:
            report.ack_latency_ms = {
                f"p{q}": round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99)
            }
            report.ack_latency_hist = latency_histogram(lat)
        spool.close()
    if isinstance(thread.error, UplinkRejected):
        raise thread.error
    return report
