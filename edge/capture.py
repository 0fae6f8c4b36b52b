"""Frame sources: video files, image folders, RTSP/HTTP streams and USB cameras.

Every source yields :class:`Frame` objects (BGR uint8 image, source frame index, capture time in
microseconds since the epoch) until it ends or ``stop`` is set. Files and folders can loop and be
paced at their own frame rate (behaving like a camera); live sources that break are reopened with
exponential backoff, each failure logged and counted, never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from edge.backoff import Backoff
from edge.config import SourceConfig
from edge.errors import SourceError

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".ts", ".mpg"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


@dataclass(frozen=True, slots=True)
class Frame:
    image: NDArray[np.uint8]  # H x W x 3, BGR
    index: int  # position in the source (frames since it was opened)
    capture_ts_us: int

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass
class SourceStats:
    frames: int = 0
    reconnects: int = 0
    read_errors: int = 0
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class FrameSource(Protocol):
    live: bool  # frames arrive in real time; a slow consumer must drop, not queue
    fps: float | None  # native rate, when known
    stats: SourceStats

    def frames(self, stop: threading.Event) -> Iterator[Frame]: ...


def _now_us() -> int:
    return time.time_ns() // 1_000


class _Sampler:
    """Keeps frames at ``target`` fps out of a ``native`` fps sequence (all when no target)."""

    def __init__(self, native: float | None, target: float | None) -> None:
        self.step = (native / target) if (native and target and target < native) else 1.0
        self.next = 0.0

    def keep(self, index: int) -> bool:
        if index + 1e-9 < self.next:
            return False
        self.next += self.step
        return True


class VideoFileSource:
    """A video file; paced at its own rate when ``pace`` (timestamps follow video time).

    A paced file stands in for a camera, so it is ``live``: a slow pipeline drops its frames
    rather than falling behind.
    """

    def __init__(self, path: Path, *, loop: bool, pace: bool, sample_fps: float | None) -> None:
        self.path = path
        self.loop = loop
        self.pace = pace
        self.live = pace
        self.sample_fps = sample_fps
        self.stats = SourceStats()
        cap = self._open()
        native = cap.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = float(native) if native and native > 0 else None
        cap.release()

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"cannot open video {self.path} (unsupported codec or not a video)")
        return cap

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        period = 1.0 / self.fps if self.fps else 0.04
        start_wall, start_us = time.monotonic(), _now_us()
        index = 0  # across loops, so timestamps keep increasing
        while not stop.is_set():
            cap = self._open()
            sampler = _Sampler(self.fps, self.sample_fps)
            try:
                while not stop.is_set():
                    ok, image = cap.read()
                    if not ok:
                        break
                    index += 1
                    if not sampler.keep(index - 1):
                        continue
                    offset = (index - 1) * period
                    if self.pace:
                        delay = start_wall + offset - time.monotonic()
                        if delay > 0 and stop.wait(delay):
                            return
                    self.stats.frames += 1
                    yield Frame(
                        np.asarray(image, np.uint8), index - 1, start_us + int(offset * 1e6)
                    )
            finally:
                cap.release()
            if not self.loop:
                return


class ImageFolderSource:
    """Images of a folder in name order, at ``fps`` (default 1) when paced (then ``live``)."""

    def __init__(self, path: Path, *, loop: bool, pace: bool, fps: float | None) -> None:
        self.live = pace
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        self.loop = loop
        self.pace = pace
        self.fps: float | None = fps or 1.0
        self.stats = SourceStats()

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        index = 0
        period = 1.0 / (self.fps or 1.0)
        start = time.monotonic()
        while not stop.is_set():
            for path in self.files:
                if stop.is_set():
                    return
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    self.stats.read_errors += 1
                    self.stats.last_error = f"unreadable image {path.name}"
                    logger.warning("skipping unreadable image %s", path)
                    continue
                if self.pace:
                    delay = start + index * period - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                self.stats.frames += 1
                yield Frame(np.ascontiguousarray(image), index, _now_us())
                index += 1
            if not self.loop:
                return


class LiveSource:
    """An RTSP/HTTP stream or a USB camera; reopened with exponential backoff when it breaks."""

    live = True

    def __init__(
        self, target: str | int, *, sample_fps: float | None, backoff: tuple[float, float]
    ):
        self.target = target
        self.sample_fps = sample_fps
        self.backoff = backoff
        self.fps: float | None = None
        self.stats = SourceStats()

    def _name(self) -> str:
        return f"camera {self.target}" if isinstance(self.target, int) else str(self.target)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        backoff = Backoff(*self.backoff)
        index = 0
        next_due = 0.0
        while not stop.is_set():
            cap = cv2.VideoCapture(self.target)
            if not cap.isOpened():
                cap.release()
                if stop.wait(self._failed(f"cannot open {self._name()}", backoff)):
                    return
                continue
            native = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(native) if native and native > 0 else None
            try:
                while not stop.is_set():
                    ok, image = cap.read()
                    if not ok:
                        break
                    backoff.reset()
                    now = time.monotonic()
                    if self.sample_fps and now < next_due:
                        continue
                    next_due = now + (1.0 / self.sample_fps if self.sample_fps else 0.0)
                    self.stats.frames += 1
                    yield Frame(np.asarray(image, np.uint8), index, _now_us())
                    index += 1
            finally:
                cap.release()
            if stop.is_set():
                return
            if stop.wait(self._failed(f"{self._name()} stopped delivering frames", backoff)):
                return

    def _failed(self, what: str, backoff: Backoff) -> float:
        """Count and log a failure; the seconds to wait before reopening."""
        delay = backoff.next_pause()
        self.stats.reconnects += 1
        self.stats.last_error = what
        logger.warning("%s; retrying in %.1f s", what, delay)
        return delay


def open_source(config: SourceConfig) -> FrameSource:
    """The source ``config.uri`` names; :class:`SourceError` if it cannot be used."""
    uri = config.uri.strip()
    backoff = (config.reconnect_initial_s, max(config.reconnect_max_s, config.reconnect_initial_s))
    if uri.isdigit():
        return LiveSource(int(uri), sample_fps=config.fps, backoff=backoff)
    if uri.lower().startswith(STREAM_SCHEMES):
        return LiveSource(uri, sample_fps=config.fps, backoff=backoff)
    path = Path(uri).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, loop=config.loop, pace=config.pace, fps=config.fps)
    if not path.exists():
        raise SourceError(
            f"source {uri} does not exist (a video file, image folder, stream URL "
            "or camera index was expected)"
        )
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SourceError(
            f"source {uri}: unsupported file type {path.suffix!r} "
            f"(video files: {', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    return VideoFileSource(path, loop=config.loop, pace=config.pace, sample_fps=config.fps)
