"""Composition root of the edge agent: build every part from an :class:`EdgeConfig` and run."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge.capture import Frame, FrameSource, open_source
from edge.codebook_fallback import CodebookFallback
from edge.codebooks import CodebookReceiver, CodebookStore
from edge.config import EdgeConfig, UplinkConfig
from edge.detect import Detector
from edge.embed import Encoder, build_encoder
from edge.errors import ConfigError, UplinkRejected
from edge.health_server import open_health
from edge.metrics import EdgeMetrics
from edge.pipeline import EdgePipeline, Outbox, StageTimes
from edge.policy import EmissionPolicy
from edge.ratecontrol import EMBEDDING_OVERHEAD
from edge.runner import EdgeRunner, RunStats
from edge.sink import FileSink, MessageSink, NullSink, SpoolSink
from edge.spool import Spool
from edge.status import StatusLine
from edge.uplink import Uplink
from edge.uplink_thread import UplinkThread
from shared import limits
from shared.errors import CodebookError
from shared.messages import CodecRef, Hello
from shared.models.codebooks import shipped_codebook
from shared.models.errors import ModelError
from shared.pq import PQCodec
from shared.vectors import create_codec

logger = logging.getLogger(__name__)


@dataclass
class Agent:
    config: EdgeConfig
    source: FrameSource
    pipeline: EdgePipeline
    outbox: Outbox
    sink: MessageSink
    runner: EdgeRunner
    uplink: UplinkThread | None = None
    metrics: EdgeMetrics | None = None  # /metrics, /healthz and the heartbeats' health


def build_agent(
    config: EdgeConfig,
    software_version: str,
    *,
    sink: MessageSink | None = None,
    max_frames: int | None = None,
    encoder: Encoder | None = None,
) -> Agent:
    """Every part of an agent; ``sink`` replaces the configured one (and the uplink),
    ``encoder`` the configured encoder (tools that analyse only boxes and tracks)."""
    source = open_source(config.source)
    detector = Detector(config.detector)
    encoder = encoder if encoder is not None else build_encoder(config.encoder)
    up = config.uplink
    ladder = [create_codec(spec, encoder.dim) for spec in (up.ladder if up else ()) or ()]
    codec = ladder[0] if ladder else create_codec(config.codec, encoder.dim)
    times = StageTimes()
    policy = EmissionPolicy(config.policy, config.source.camera_id)
    pipeline = EdgePipeline(
        detector, encoder, codec, policy, config.crop.scale, times, ladder=ladder
    )
    shipped = _shipped_codebook(config)
    if shipped is not None:  # fitted on generic crops: PQ codes from the first frame
        pipeline.adopt(shipped)
        logger.info("embeddings use the codebook that ships with the encoder: %s", shipped)
    uplink: UplinkThread | None = None
    if sink is None and up is not None:
        spool_sink = SpoolSink(Spool(up.spool_path, up.spool_max_bytes))

        def adapt(chattiness: float) -> None:
            policy.chattiness = chattiness

        link = Uplink(
            up,
            config.edge_id,
            spool_sink.spool,
            lambda: spool_sink.hello,
            ladder=[c.codec_id for c in pipeline.ladder],
            rung_bytes=[c.code_bytes + EMBEDDING_OVERHEAD for c in pipeline.ladder],
            on_adapt=adapt,
        )
        spool_sink.on_append = link.spooled
        pipeline.pick_rung = link.ladder.pick
        uplink = UplinkThread(link)
        sink = spool_sink
    if sink is None:
        sink = FileSink(config.sink.path) if config.sink is not None else NullSink()
    outbox = Outbox(config.edge_id, sink, times=times)
    if uplink is not None and up is not None and up.accept_codebooks:
        assert isinstance(sink, SpoolSink)
        wire_codebooks(up, pipeline, outbox, sink, uplink.uplink)

    def hello(frame: Frame) -> None:
        outbox.put(
            frame.capture_ts_us, pipeline.hello(software_version, frame, source.fps), control=True
        )

    runner = EdgeRunner(
        source,
        pipeline,
        outbox,
        max_pending=config.policy.max_pending_embeddings,
        batch_size=config.encoder.batch_size,
        on_first_frame=hello,
        max_frames=max_frames,
    )
    metrics = EdgeMetrics(
        outbox,
        runner=runner,
        pipeline=pipeline,
        uplink=uplink.uplink if uplink is not None else None,
        stale_after_s=config.health.stale_after_s,
    )
    return Agent(config, source, pipeline, outbox, sink, runner, uplink, metrics)


def _shipped_codebook(config: EdgeConfig) -> PQCodec | None:
    """The codebook of the models-manifest encoder the config names, when one ships with it
    (``codebook:`` of the entry) and is provisioned; a wrong file is a ConfigError."""
    name = getattr(config.encoder, "name", None)
    if not isinstance(name, str):
        return None
    try:
        return shipped_codebook(name)
    except (CodebookError, ModelError) as exc:
        raise ConfigError(f"encoder {name!r}: its codebook cannot be used: {exc}") from None


def wire_codebooks(
    up: UplinkConfig, pipeline: EdgePipeline, outbox: Outbox, sink: SpoolSink, link: Uplink
) -> CodebookReceiver:
    """Let ``link`` take the codebooks the cloud pushes, switching ``pipeline`` to each; a
    codebook kept from before a restart is used at once (the first Hello announces it)."""
    store = CodebookStore(codebook_dir(up), pipeline.encoder.name, pipeline.encoder.dim)
    kept = store.current()
    if kept is not None and kept.code_bytes > up.codebook_max_bytes:  # the setting was lowered
        logger.warning(
            "the kept codebook %s has %d-byte codes, more than uplink.codebook_max_bytes (%d): "
            "not used; the cloud offers a smaller one",
            kept,
            kept.code_bytes,
            up.codebook_max_bytes,
        )
        kept = None
    if kept is not None:
        pipeline.adopt(kept)
        _mark(link, kept)
        logger.info("embeddings use the codebook %s kept in %s", kept, store.directory)
    receiver = CodebookReceiver(
        store,
        lambda book: _switch(book, pipeline, outbox, sink, link),
        max_code_bytes=up.codebook_max_bytes,
    )
    link.codebooks = receiver
    link.on_codebook_refused = CodebookFallback(store, pipeline, outbox, sink, link)
    return receiver


def codebook_dir(up: UplinkConfig) -> Path:
    """Where pushed codebooks are kept: ``codebook_dir``, or next to the spool."""
    if up.codebook_dir is not None:
        return up.codebook_dir
    return up.spool_path.with_name(up.spool_path.stem + "-codebooks")


def _mark(link: Uplink, book: PQCodec) -> None:
    link.codebook = book.codec_id
    link.stats.codebook = f"{book.codec_id} {book.content_hash.hex()[:12]}"


def _switch(
    book: PQCodec, pipeline: EdgePipeline, outbox: Outbox, sink: SpoolSink, link: Uplink
) -> None:
    """Switch the embeddings to a codebook the cloud pushed (called by the uplink's receiver).

    First the live Hello is announced again with the codebook added to its codecs (so every
    frame spooled from now on goes under a Hello naming it: frames made before are sent in
    their own Hello's session, see edge.groups), then the pipeline encodes with it."""
    if pipeline.pinned and pipeline.codec.content_hash == book.content_hash:
        return
    hello = sink.hello
    if isinstance(hello, Hello) and all(r.content_hash != book.content_hash for r in hello.codecs):
        codecs = (*hello.codecs, CodecRef(book.codec_id, book.content_hash))
        hello = dataclasses.replace(hello, codecs=codecs[-limits.MAX_CODECS :])
        outbox.put(time.time_ns() // 1_000, hello, control=True)
    pipeline.adopt(book)
    _mark(link, book)
    logger.info("embeddings switched to the codebook the cloud pushed: %s", book)


def run_agent(agent: Agent, stop: threading.Event, *, status: bool = True) -> RunStats:
    """Run until the source ends or ``stop`` is set; the sink is flushed and closed.

    With an uplink, the spool keeps sending for ``uplink.drain_timeout_s`` after the source
    ended (not after ``stop``); what is left stays spooled for the next start. Raises
    :class:`~edge.errors.UplinkRejected` when the cloud refused the edge.
    """
    uplink = agent.uplink
    metrics = agent.metrics
    server = open_health(agent.config.health, metrics) if metrics is not None else None
    if metrics is not None:
        metrics.start()
        metrics.phase = "running"
    if uplink is not None:
        uplink.on_fatal = lambda _exc: stop.set()
        uplink.start()
    try:
        if status:
            with StatusLine(
                agent.runner,
                agent.pipeline,
                agent.outbox,
                interval_s=agent.config.status_interval_s,
                random_init=agent.pipeline.encoder.random_init,
            ):
                stats = agent.runner.run(stop)
        else:
            stats = agent.runner.run(stop)
    finally:
        agent.sink.close()
        if uplink is not None:
            assert agent.config.uplink is not None
            drain = 0.0 if stop.is_set() else agent.config.uplink.drain_timeout_s
            if drain and uplink.alive:
                logger.info("source ended: draining the spool (at most %.0f s)", drain)
            if metrics is not None:
                metrics.phase = "draining"
            uplink.stop(drain, interrupt=stop)
        if metrics is not None:
            metrics.phase = "stopped"
            metrics.stop()
        if server is not None:
            server.close()
        if uplink is not None:
            uplink.uplink.spool.close()
    if uplink is not None and isinstance(uplink.error, UplinkRejected):
        raise uplink.error
    return stats
