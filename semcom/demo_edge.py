"""The demo's edge: a source (or the built-in sample), the real agent, and what it cost.

The agent is the one ``semcom edge run`` builds (:func:`edge.daemon.build_agent`), sending over
its uplink (spool, WebRTC data channels, acks). Its frame source is wrapped in a
:class:`FrameTap` that counts every frame the camera delivered and feeds it to an H.264 encoder
in a thread of its own (:class:`H264Feed`), so the pixel baselines (raw, H.264) are measured on
exactly those frames, whatever the source (file, folder, still image, live stream).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from edge.capture import Frame, FrameSource, SourceStats
from edge.config import EdgeConfig
from semcom.demo_source import DemoSource
from sim.media import DEFAULT_CRF, H264Meter, MediaError

if TYPE_CHECKING:
    from edge.daemon import Agent
    from edge.runner import RunStats

logger = logging.getLogger(__name__)

EDGE_ID = "demo-edge"
CAMERA_ID = "demo-cam"


def edge_overrides(
    source: DemoSource,
    *,
    detector: str | None,
    encoder: str,
    encoder_weights: Path | None,
    random_init: bool,
    cloud_url: str,
    token: str,
    spool: Path,
    model_kwargs: dict[str, Any] | None = None,
    encoder_preprocess: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Dotted overrides of the demo's edge config (the same keys as ``semcom edge run``)."""
    from edge.cli import flag_overrides

    out = flag_overrides(
        source=source.uri,
        camera_id=CAMERA_ID,
        edge_id=EDGE_ID,
        detector=detector,
        encoder=encoder,
        encoder_weights=encoder_weights,
        model_kwargs=model_kwargs,
        encoder_preprocess=encoder_preprocess,
        random_init_encoder=random_init or None,
    )
    out["source.pace"] = source.pace
    out["source.loop"] = source.loop
    if source.fps is not None:
        out["source.fps"] = source.fps
    out.update(
        {
            "uplink.cloud": cloud_url,
            "uplink.token": token,
            "uplink.transport": "webrtc",
            "uplink.ice_host_addresses": ["127.0.0.1"],
            "uplink.spool_path": str(spool),
            "uplink.drain_timeout_s": 120.0,
            "uplink.reconnect_max_s": 2.0,
        }
    )
    return out


def load_edge_config(overrides: dict[str, Any]) -> EdgeConfig:
    """The edge config from the demo's flags only (no file; SEMCOM_EDGE__* is not read, so a
    shell set up for a real edge cannot point the demo elsewhere)."""
    from edge.config import load_config

    return load_config(None, overrides, environ={})


class H264Feed:
    """H.264-encodes the frames it is given, in its own thread (blocking when 32 wait)."""

    def __init__(self, crf: int = DEFAULT_CRF) -> None:
        self.crf = crf
        self.error = ""
        self._meter: H264Meter | None = None
        self._queue: queue.Queue[NDArray[np.uint8] | None] = queue.Queue(maxsize=32)
        self._thread: threading.Thread | None = None

    def put(self, image: NDArray[np.uint8], fps: float) -> None:
        if self._thread is None:
            self._meter = H264Meter(fps, self.crf)
            self._thread = threading.Thread(target=self._run, name="h264", daemon=True)
            self._thread.start()
        self._queue.put(image)

    def _run(self) -> None:
        assert self._meter is not None
        while (image := self._queue.get()) is not None:
            if self.error:
                continue  # keep draining so the capture never blocks
            try:
                self._meter.add(image)
            except MediaError as exc:
                self.error = str(exc)
                logger.warning("H.264 baseline not measured: %s", exc)

    def close(self) -> H264Meter | None:
        """Wait for the queued frames; the meter (None without frames, or after an error)."""
        if self._thread is None or self._meter is None:
            return None
        self._queue.put(None)
        self._thread.join()
        self._meter.close()
        return None if self.error else self._meter


@dataclass
class TapStats:
    frames: int = 0
    raw_bytes: int = 0
    width: int = 0
    height: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)


class FrameTap:
    """A :class:`~edge.capture.FrameSource` around the agent's own: counts each delivered frame
    (``W * H * 3`` raw bytes), hands it to the H.264 feed, and ends the source after
    ``max_frames`` frames or ``max_wall_s`` seconds (the agent then drains as at a file's end).
    """

    def __init__(
        self,
        inner: FrameSource,
        feed: H264Feed,
        *,
        max_frames: int | None = None,
        max_wall_s: float | None = None,
    ) -> None:
        self.inner = inner
        self.live = inner.live
        self.fps = inner.fps
        self.stats: SourceStats = inner.stats
        self.feed = feed
        self.max_frames = max_frames
        self.max_wall_s = max_wall_s
        self.tap = TapStats()

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        start = time.monotonic()
        frames = self.inner.frames(stop)
        try:
            for frame in frames:
                self.fps = self.inner.fps
                t = self.tap
                t.frames += 1
                t.raw_bytes += frame.width * frame.height * 3
                t.width, t.height = frame.width, frame.height
                t.sizes.add((frame.width, frame.height))
                self.feed.put(frame.image, self.fps or 25.0)
                yield frame
                if self.max_frames is not None and t.frames >= self.max_frames:
                    return
                if self.max_wall_s is not None and time.monotonic() - start >= self.max_wall_s:
                    return
        finally:
            if isinstance(frames, Generator):
                frames.close()  # release the capture now, not at garbage collection


class Progress:
    """Prints a progress line on stderr every ``interval_s`` while the edge runs, and calls
    ``check`` (which may stop the run: e.g. when the cloud process died)."""

    def __init__(
        self,
        line: Callable[[], str],
        check: Callable[[], None],
        *,
        interval_s: float = 2.0,
        echo: Callable[[str], None],
    ) -> None:
        self.line = line
        self.check = check
        self.interval_s = interval_s
        self.echo = echo
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-progress", daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
                self.echo(self.line())
            except Exception:  # a status line must never take the run down
                logger.exception("progress line failed")


@dataclass
class EdgeOutcome:
    """What the edge did and what it sent, for the summary (bytes are the uplink's payload)."""

    frames: int  # processed by the detector
    captured: int  # delivered by the source (the pixel baselines count these)
    dropped: int
    skipped_embeddings: int
    elapsed_s: float
    video_s: float
    width: int  # of the last frame (see frame_sizes)
    height: int
    frame_sizes: int  # distinct frame sizes (image folders may mix them)
    fps: float | None
    raw_bytes: int
    h264_bytes: int | None
    h264_note: str
    objects: int  # boxes detected over all frames
    tracks_confirmed: int
    flicker_tracks: int
    messages: dict[str, int]
    message_bytes: int
    sent_bytes: int
    sent_frames: int
    acked_frames: int
    connects: int
    left_in_spool: int
    detector: str
    encoder: str
    dim: int
    random_init: bool
    codec: str
    class_names: dict[int, str]


def attach_tap(agent: Agent, source: DemoSource, feed: H264Feed) -> FrameTap:
    """Wrap the agent's frame source (before it runs) in a :class:`FrameTap`."""
    tap = FrameTap(
        agent.runner.source, feed, max_frames=source.max_frames, max_wall_s=source.max_wall_s
    )
    agent.runner.source = tap
    return tap


def progress_line(agent: Agent, tap: FrameTap, started: float) -> str:
    """``frames | objects, active tracks | spooled | sent, acked`` of a running agent."""
    runner, outbox = agent.runner, agent.outbox
    elapsed = max(time.monotonic() - started, 1e-9)
    line = (
        f"demo: {runner.stats.frames} frames ({runner.stats.frames / elapsed:.1f}/s) | "
        f"{agent.pipeline.rois} objects, {agent.pipeline.policy.active_tracks} active tracks | "
        f"{outbox.stats.total_messages} messages ({outbox.stats.total_bytes / 1e3:.1f} kB)"
    )
    if agent.uplink is not None:
        s = agent.uplink.uplink.stats
        line += f" | sent {s.sent_bytes / 1e3:.1f} kB, {s.acked_frames} acked ({s.state})"
    return line


def _left_in_spool(path: Path) -> int:
    from edge.spool import Spool

    if not path.exists():
        return 0
    spool = Spool(path)
    try:
        return spool.pending
    finally:
        spool.close()


def outcome(agent: Agent, tap: FrameTap, feed: H264Feed, stats: RunStats) -> EdgeOutcome:
    """Collect the figures once the agent returned (its spool is closed by then)."""
    meter = feed.close()
    pipeline, uplink = agent.pipeline, agent.uplink
    up = uplink.uplink.stats if uplink is not None else None
    if meter is not None:
        h264, note = meter.bytes, f"libx264 CRF {meter.crf}, preset {meter.preset}"
        if (meter.width & 1) or (meter.height & 1):
            note += ", odd last row/column left out"
    else:
        h264, note = None, feed.error or "no frames"
    detector = pipeline.detector
    spool_path = agent.config.uplink.spool_path if agent.config.uplink else None
    return EdgeOutcome(
        frames=stats.frames,
        captured=tap.tap.frames,
        dropped=stats.dropped_frames,
        skipped_embeddings=stats.skipped_embeddings,
        elapsed_s=stats.elapsed_s,
        video_s=stats.video_s,
        width=tap.tap.width,
        height=tap.tap.height,
        frame_sizes=len(tap.tap.sizes),
        fps=tap.fps,
        raw_bytes=tap.tap.raw_bytes,
        h264_bytes=h264,
        h264_note=note,
        objects=pipeline.rois,
        tracks_confirmed=pipeline.policy.stats.tracks_ended,
        flicker_tracks=pipeline.policy.stats.flicker_tracks,
        messages=dict(agent.outbox.stats.messages),
        message_bytes=agent.outbox.stats.total_bytes,
        sent_bytes=up.sent_bytes if up else 0,
        sent_frames=up.sent_frames if up else 0,
        acked_frames=up.acked_frames if up else 0,
        connects=up.connects if up else 0,
        left_in_spool=_left_in_spool(spool_path) if spool_path else 0,
        detector=detector.name,
        encoder=pipeline.encoder.name,
        dim=pipeline.encoder.dim,
        random_init=pipeline.encoder.random_init,
        codec=pipeline.codec.codec_id,
        class_names=dict(getattr(detector, "class_names", {}) or {}),
    )
