"""Composition root of the edge agent: build every part from an :class:`EdgeConfig` and run."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from edge.capture import Frame, FrameSource, open_source
from edge.config import EdgeConfig
from edge.detect import Detector
from edge.embed import build_encoder
from edge.pipeline import EdgePipeline, Outbox, StageTimes
from edge.policy import EmissionPolicy
from edge.runner import EdgeRunner, RunStats
from edge.sink import FileSink, MessageSink, NullSink
from edge.status import StatusLine
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


def build_agent(
    config: EdgeConfig,
    software_version: str,
    *,
    sink: MessageSink | None = None,
    max_frames: int | None = None,
) -> Agent:
    source = open_source(config.source)
    detector = Detector(config.detector)
    encoder = build_encoder(config.encoder)
    codec = create_codec(config.codec, encoder.dim)
    times = StageTimes()
    policy = EmissionPolicy(config.policy, config.source.camera_id)
    pipeline = EdgePipeline(detector, encoder, codec, policy, config.crop.scale, times)
    if sink is None:
        sink = FileSink(config.sink.path) if config.sink is not None else NullSink()
    first_seq = getattr(sink, "last_seq", 0) + 1
    outbox = Outbox(config.edge_id, sink, first_seq=first_seq, times=times)

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
    return Agent(config, source, pipeline, outbox, sink, runner)


def run_agent(agent: Agent, stop: threading.Event, *, status: bool = True) -> RunStats:
    """Run until the source ends or ``stop`` is set; the sink is flushed and closed."""
    try:
        if status:
            with StatusLine(
                agent.runner,
                agent.pipeline,
                agent.outbox,
                interval_s=agent.config.status_interval_s,
                random_init=agent.pipeline.encoder.random_init,
            ):
                return agent.runner.run(stop)
        return agent.runner.run(stop)
    finally:
        agent.sink.close()
