"""Where encoded frames go: a message file now; the uplink implements the same protocol."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Protocol

from shared.codec import decode
from shared.errors import DecodeError
from shared.framing import FrameWriter, read_frames

logger = logging.getLogger(__name__)


class MessageSink(Protocol):
    def write(self, frame: bytes) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Discards frames (benchmarks count bytes in the outbox)."""

    def write(self, frame: bytes) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class FileSink:
    """Appends frames to a message file; flushed at most every ``flush_s`` and on close."""

    def __init__(self, path: Path, flush_s: float = 1.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.last_seq = last_seq_in(path) if path.exists() and path.stat().st_size else 0
        self._fh = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._writer = FrameWriter(self._fh)
        self._flush_s = flush_s
        self._flushed = time.monotonic()

    def write(self, frame: bytes) -> None:
        self._writer.write(frame)
        if time.monotonic() - self._flushed >= self._flush_s:
            self.flush()

    def flush(self) -> None:
        self._writer.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def last_seq_in(path: Path) -> int:
    """Highest sequence number in an existing message file (to continue numbering after it)."""
    last = 0
    with open(path, "rb") as fh:
        try:
            for frame in read_frames(fh):
                last = max(last, decode(frame).seq)
        except DecodeError as exc:
            logger.warning("%s: stopped reading at a damaged record (%s)", path, exc)
    return last
