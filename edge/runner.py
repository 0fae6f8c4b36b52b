"""The real-time edge loop: capture, detection and embedding in three overlapping threads.

    capture --frames(2)--> detect+track+policy+crop --jobs(N)--> embed+codec --> outbox
                                 \\-------------------- counts, boxes, track ends ---^

Queues are bounded. A live source that outruns detection loses its oldest queued frame
(counted as dropped); a file that is not paced simply waits. When the encoder falls behind,
new embedding requests are skipped (counted) and the policy asks again on a later frame, so
detection never waits for embeddings. Torch and ONNX Runtime release the GIL while they compute.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.capture import Frame, FrameSource
from edge.pipeline import EdgePipeline, EmbedJob, Outbox

logger = logging.getLogger(__name__)

_END = object()


@dataclass
class RunStats:
    frames: int = 0
    dropped_frames: int = 0
    skipped_embeddings: int = 0
    elapsed_s: float = 0.0
    video_s: float = 0.0  # capture-time span of the processed frames
    last_frame_at: float | None = None  # time.monotonic() when the last frame was processed

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


class EdgeRunner:
    def __init__(
        self,
        source: FrameSource,
        pipeline: EdgePipeline,
        outbox: Outbox,
        *,
        max_pending: int = 32,
        batch_size: int = 8,
        on_first_frame: Callable[[Frame], None] | None = None,
        max_frames: int | None = None,
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        self.outbox = outbox
        self.batch_size = batch_size
        self.on_first_frame = on_first_frame
        self.max_frames = max_frames
        self.stats = RunStats()
        self._frames: queue.Queue[object] = queue.Queue(maxsize=2)
        self._jobs: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._errors: list[BaseException] = []
        self._first_ts: int | None = None
        self._last_ts = 0

    def run(self, stop: threading.Event) -> RunStats:
        """Process until the source ends or ``stop`` is set; flushes everything before returning."""
        start = time.perf_counter()
        threads = [
            threading.Thread(target=self._guard, args=(self._capture, stop), name="capture"),
            threading.Thread(target=self._guard, args=(self._detect, stop), name="detect"),
            threading.Thread(target=self._guard, args=(self._embed, stop), name="embed"),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.outbox.put_all(self.pipeline.finish())
        self.outbox.flush()
        self.stats.elapsed_s = time.perf_counter() - start
        if self._first_ts is not None:
            self.stats.video_s = (self._last_ts - self._first_ts) / 1e6
        if self._errors:
            raise self._errors[0]
        return self.stats

    def _guard(self, loop: Callable[[threading.Event], None], stop: threading.Event) -> None:
        try:
            loop(stop)
        except Exception as exc:
            logger.exception("edge %s thread failed; stopping", threading.current_thread().name)
            self._errors.append(exc)
            stop.set()
            # Unblock the other threads: they may be waiting on a queue.
            for q in (self._frames, self._jobs):
                _put_end(q)

    def _capture(self, stop: threading.Event) -> None:
        count = 0
        times = self.pipeline.times
        frames = self.source.frames(stop)
        try:
            while True:
                start = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    break
                times.add("capture", (time.perf_counter() - start) * 1e3)
                if self.source.live:
                    while True:
                        try:
                            self._frames.put_nowait(frame)
                            break
                        except queue.Full:
                            try:
                                self._frames.get_nowait()
                                self.stats.dropped_frames += 1
                            except queue.Empty:
                                pass
                else:
                    while not stop.is_set():
                        try:
                            self._frames.put(frame, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                count += 1
                if self.max_frames is not None and count >= self.max_frames:
                    break
        finally:
            self._close(self._frames)

    def _detect(self, stop: threading.Event) -> None:
        try:
            while True:
                item = self._frames.get()
                if item is _END:
                    return
                assert isinstance(item, Frame)
                if self._first_ts is None:
                    self._first_ts = item.capture_ts_us
                    if self.on_first_frame is not None:
                        self.on_first_frame(item)
                self._last_ts = item.capture_ts_us
                messages, jobs = self.pipeline.detect(item)
                self.outbox.put_all(messages)
                for job in jobs:
                    try:
                        self._jobs.put_nowait(job)
                    except queue.Full:
                        self.pipeline.policy.on_skipped(job.request)
                        self.stats.skipped_embeddings += 1
                self.stats.frames += 1
                self.stats.last_frame_at = time.monotonic()
                self.outbox.flush_if_due()
        finally:
            self._close(self._jobs)

    def _embed(self, stop: threading.Event) -> None:
        done = False
        while not done:
            item = self._jobs.get()
            if item is _END:
                return
            batch = [item]
            while len(batch) < self.batch_size:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is _END:
                    done = True
                    break
                batch.append(nxt)
            jobs = [j for j in batch if isinstance(j, EmbedJob)]
            self.outbox.put_all(self.pipeline.embed(jobs))

    def _close(self, q: queue.Queue[object]) -> None:
        """Queue the end marker behind the remaining items; after a failure, make room."""
        while not self._errors:
            try:
                q.put(_END, timeout=0.2)
                return
            except queue.Full:
                continue
        _put_end(q)


def _put_end(q: queue.Queue[object]) -> None:
    """Queue the end marker, making room if a stalled consumer left the queue full."""
    while True:
        try:
            q.put_nowait(_END)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
