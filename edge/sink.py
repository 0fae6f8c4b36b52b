"""Where encoded frames go: a message file, nowhere (benchmarks), or the uplink's spool.

A sink allocates the sequence number of each data message (``append``), so numbering stays
continuous across restarts: a message file continues after its last seq, the spool keeps its
counter. Control messages (Hello) carry seq 0 and go through ``control``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from edge.spool import Priority, Spool
from shared.codec import decode
from shared.errors import DecodeError
from shared.framing import FrameWriter, read_frames
from shared.messages import Hello, Message

logger = logging.getLogger(__name__)


MakeFrame = Callable[[int], bytes]  # seq -> encoded frame


class MessageSink(Protocol):
    def append(self, priority: Priority, make_frame: MakeFrame) -> int:
        """Allocate the next seq, build the frame with it and keep it; returns the seq."""
        ...

    def control(self, message: Message, frame: bytes) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Discards frames (benchmarks count bytes in the outbox)."""

    def __init__(self) -> None:
        self.last_seq = 0

    def append(self, priority: Priority, make_frame: MakeFrame) -> int:
        self.last_seq += 1
        make_frame(self.last_seq)
        return self.last_seq

    def control(self, message: Message, frame: bytes) -> None:
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

    def append(self, priority: Priority, make_frame: MakeFrame) -> int:
        seq = self.last_seq + 1
        self._write(make_frame(seq))
        self.last_seq = seq
        return seq

    def control(self, message: Message, frame: bytes) -> None:
        self._write(frame)

    def _write(self, frame: bytes) -> None:
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


class SpoolSink:
    """Hands messages to the uplink: data into the durable spool (committed before anything is
    sent, each frame with the Hello it was made under), the latest Hello kept for every
    (re)connection. ``on_append(priority, size)`` tells the uplink (wakes its sender, feeds
    its load meter)."""

    def __init__(self, spool: Spool, on_append: Callable[[Priority, int], None] | None = None):
        self.spool = spool
        self.on_append = on_append
        self.hello: Message | None = None
        self.hello_ready = threading.Event()
        self._hello_id: int | None = None  # in the spool

    def append(self, priority: Priority, make_frame: MakeFrame) -> int:
        size = 0

        def sized(seq: int) -> bytes:
            nonlocal size
            frame = make_frame(seq)
            size = len(frame)
            return frame

        seq = self.spool.append(priority, sized, self._hello_id)
        if self.on_append is not None:
            self.on_append(priority, size)
        return seq

    def control(self, message: Message, frame: bytes) -> None:
        if isinstance(message, Hello):
            self._hello_id = self.spool.hello_id(message)
        self.hello = message
        self.hello_ready.set()

    def flush(self) -> None:
        pass  # every append is already committed

    def close(self) -> None:
        pass  # the uplink owns the spool and closes it
