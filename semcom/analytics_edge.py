"""Run the edge agent on a clip in-process and record its messages, as ``edge run --out`` does.

The agent is the one ``semcom edge run`` builds (:func:`edge.daemon.build_agent`: capture,
detector and tracker, emission policy, outbox, file sink) from the same configuration keys, with
two differences that do not change a single box or track:

- the source is read as fast as the pipeline takes it (``source.pace`` off, no frame dropped),
  optionally from ``start`` seconds into the video (frames before it are decoded and dropped
  before the detector: the tracker starts there, as a camera switched on then) and for
  ``seconds`` of video;
- the encoder is :class:`ConstantEncoder`: analytics reads boxes and tracks, never
  embeddings, so the embedding thread does no work (Embedding messages still go out, carrying
  a constant vector).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shared.timm_encoder import Preprocess

if TYPE_CHECKING:
    from edge.capture import Frame, FrameSource, SourceStats
    from edge.config import EdgeConfig
    from edge.daemon import Agent

#: Dimension of the constant encoder's vectors (codec f16: 16 bytes per Embedding).
CONSTANT_DIM = 8


class ConstantEncoder:
    """An :class:`~edge.embed.Encoder` that gives every crop the same unit vector."""

    name = "constant (analytics: embeddings not computed)"
    dim = CONSTANT_DIM
    random_init = True  # the vectors carry no meaning, and the Hello says so
    runtime = "onnx"
    execution = "none"
    preprocess = Preprocess(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "nearest")

    def embed(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        out = np.zeros((len(crops), self.dim), np.float32)
        out[:, 0] = 1.0
        return out


class ClipSource:
    """A :class:`~edge.capture.FrameSource` around the agent's own: drops the frames of the
    first ``start`` seconds (capture time from the first frame), ends after ``seconds`` more,
    and calls ``on_frame`` for each frame it delivers."""

    def __init__(
        self,
        inner: FrameSource,
        *,
        start: float = 0.0,
        seconds: float | None = None,
        on_frame: Callable[[Frame], object] | None = None,
    ) -> None:
        self.inner = inner
        self.live = inner.live
        self.fps = inner.fps
        self.stats: SourceStats = inner.stats
        self.start_us = round(start * 1e6)
        self.end_us = None if seconds is None else self.start_us + round(seconds * 1e6)
        self.on_frame = on_frame

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        frames = self.inner.frames(stop)
        first: int | None = None
        try:
            for frame in frames:
                first = frame.capture_ts_us if first is None else first
                offset = frame.capture_ts_us - first
                if offset < self.start_us:
                    continue
                if self.end_us is not None and offset >= self.end_us:
                    return
                if self.on_frame is not None:
                    self.on_frame(frame)
                yield frame
        finally:
            if isinstance(frames, Generator):
                frames.close()  # release the capture now


@dataclass(frozen=True)
class ClipRun:
    """What the edge did on the clip."""

    frames: int
    start_s: float
    video_s: float
    elapsed_s: float
    messages: dict[str, int]
    detector: str
    imgsz: int
    tracker: str
    sample_fps: float | None
    native_fps: float | None


def clip_config(
    config_path: Path | None, source: str, flags: dict[str, Any], out: Path
) -> EdgeConfig:
    """The edge config: a file (optional), then the flags (``edge run``'s names: detector,
    imgsz, conf, tracker, fps); the source read unpaced and once, messages to ``out``, no
    uplink. ``SEMCOM_EDGE__*`` variables are not read (an evaluation is not an edge)."""
    from edge.cli import flag_overrides
    from edge.config import FileSinkConfig, load_config

    overrides = flag_overrides(source=source, **flags)
    overrides.update({"source.pace": False, "source.loop": False, "codec": "f16"})
    config = load_config(config_path, overrides, environ={})
    return config.model_copy(update={"uplink": None, "sink": FileSinkConfig(path=out)})


def total_frames(
    source: str, start: float, seconds: float | None, sample_fps: float | None
) -> int | None:
    """Frames the edge will process from a video file (for a progress bar); None if unknown."""
    import cv2

    path = Path(source).expanduser()
    if not path.is_file():
        return None
    cap = cv2.VideoCapture(str(path))
    try:
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    if not count or count <= 0 or not fps or fps <= 0:
        return None
    left = max(count / fps - start, 0.0)
    span = left if seconds is None else min(seconds, left)
    return round(span * min(sample_fps or fps, fps))


class Clip:
    """The agent built for a clip (:meth:`open` raises the edge's errors, such as a missing
    source or detector, before anything runs); :meth:`run` runs it once."""

    def __init__(self, agent: Agent, source: ClipSource, start: float) -> None:
        self.agent = agent
        self.source = source
        self.start = start

    @classmethod
    def open(cls, config: EdgeConfig, *, start: float = 0.0, seconds: float | None = None) -> Clip:
        """The agent of ``config`` on its source from ``start`` seconds, for ``seconds`` of
        video (all of it: None); its messages go to ``config.sink.path``."""
        from edge.daemon import build_agent
        from shared.version import software_version

        agent = build_agent(config, software_version(), encoder=ConstantEncoder())
        source = ClipSource(agent.runner.source, start=start, seconds=seconds)
        agent.runner.source = source
        return cls(agent, source, start)

    def run(self, on_frame: Callable[[Frame], object] | None = None) -> ClipRun:
        """Run until the clip (or its span) ends; the message file is closed when it returns.
        ``on_frame`` is called with each frame handed to the detector."""
        from edge.daemon import run_agent
        from edge.detect import Detector

        self.source.on_frame = on_frame
        agent, config = self.agent, self.agent.config
        stats = run_agent(agent, threading.Event(), status=False)
        detector = agent.pipeline.detector
        return ClipRun(
            frames=stats.frames,
            start_s=self.start,
            video_s=stats.video_s,
            elapsed_s=stats.elapsed_s,
            messages=dict(agent.outbox.stats.messages),
            detector=detector.name,
            imgsz=detector.imgsz if isinstance(detector, Detector) else config.detector.imgsz,
            tracker=config.detector.tracker,
            sample_fps=config.source.fps,
            native_fps=agent.source.fps,
        )
