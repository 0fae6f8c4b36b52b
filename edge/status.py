"""The live one-line status of a running edge agent (stderr, refreshed in place)."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from edge.pipeline import EdgePipeline, Outbox
from edge.runner import EdgeRunner


class StatusLine:
    """Prints ``fps | tracks | messages | bytes/s | dropped`` every ``interval_s`` seconds."""

    def __init__(
        self,
        runner: EdgeRunner,
        pipeline: EdgePipeline,
        outbox: Outbox,
        *,
        interval_s: float = 1.0,
        random_init: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.runner, self.pipeline, self.outbox = runner, pipeline, outbox
        self.interval_s = interval_s
        self.tag = " | RANDOM-INIT ENCODER" if random_init else ""
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status", daemon=True)

    def __enter__(self) -> StatusLine:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        dt = max(time.monotonic() - self._start, 1e-9)
        o = self.outbox.stats
        summary = self.line(
            self.runner.stats.frames / dt, o.total_messages / dt, o.total_bytes / dt
        )
        self.stream.write("\r\033[K" + summary + "\n")
        self.stream.flush()

    def line(self, fps: float, msg_rate: float, byte_rate: float) -> str:
        s, o = self.runner.stats, self.outbox.stats
        return (
            f"frames {s.frames} ({fps:.1f} fps) | tracks {self.pipeline.policy.active_tracks} | "
            f"messages {o.total_messages} ({msg_rate:.1f}/s) | {byte_rate / 1000:.2f} kB/s | "
            f"dropped {s.dropped_frames} frames, {s.skipped_embeddings} embeds"
            f"{self._source_note()}{self._codebook_note()}{self.tag}"
        )

    def _codebook_note(self) -> str:
        """The codebook the embeddings use since the cloud pushed it (or it shipped)."""
        if not self.pipeline.pinned:
            return ""
        return f" | codebook {self.pipeline.codec.codec_id}"

    def _source_note(self) -> str:
        stats = self.runner.source.stats
        if not stats.reconnects:
            return ""
        return f" | source reconnects {stats.reconnects} ({stats.last_error})"

    def _loop(self) -> None:
        last = (time.monotonic(), 0, 0, 0)
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            frames = self.runner.stats.frames
            msgs, nbytes = self.outbox.stats.total_messages, self.outbox.stats.total_bytes
            dt = max(now - last[0], 1e-9)
            text = self.line(
                (frames - last[1]) / dt, (msgs - last[2]) / dt, (nbytes - last[3]) / dt
            )
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            last = (now, frames, msgs, nbytes)
