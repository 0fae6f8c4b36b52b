"""The cloud's memory during ``semcom bench load``: resident set over time, and the index's part.

:class:`RssSampler` reads the cloud process's RSS (``VmRSS`` in ``/proc/PID/status``: Linux,
like the process handling) every ``period_s`` in a thread, so
the figures at the benchmark's milestones (start, 60 s, end, after the idle wait) are samples
taken by the same clock as the timeline. :func:`index_memory` asks the cloud's ``/healthz`` how
many vectors its indexes hold and how many bytes they account for (the faiss backend's
``memory_bytes``: the vectors in the columns beside faiss and in faiss itself, and the attribute
columns), so the report can tell data the service was asked to keep from memory it lost.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 2**20


@dataclass(frozen=True)
class IndexMemory:
    """What the cloud's vector indexes hold: vectors, and the bytes they account for."""

    vectors: int
    bytes: int

    @property
    def mb(self) -> float:
        return round(self.bytes / MB, 1)


def index_memory(cloud_url: str, timeout_s: float = 10.0) -> IndexMemory | None:
    """Vectors and accounted bytes of every index (``/healthz`` details); None if unknown."""
    try:
        with urllib.request.urlopen(f"{cloud_url}/healthz", timeout=timeout_s) as response:
            health = json.load(response)
    except (OSError, urllib.error.URLError, ValueError):
        return None
    spaces = health.get("details", {}).get("spaces", {})
    vectors = sum(int(s.get("size", 0)) for s in spaces.values())
    nbytes = sum(int(s.get("memory_bytes", 0)) for s in spaces.values())
    return IndexMemory(vectors, nbytes)


def rss_bytes(proc_status: str) -> int:
    """Resident set size from the text of ``/proc/PID/status`` (its ``VmRSS`` line, kB)."""
    for line in proc_status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no VmRSS line (a zombie process?)")


@dataclass
class RssSampler:
    """Samples a process's resident set size every ``period_s`` (a daemon thread)."""

    pid: int
    period_s: float = 1.0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (monotonic s, bytes)

    def __post_init__(self) -> None:
        self._status = Path(f"/proc/{self.pid}/status")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> int:
        """Take a sample now; its RSS in bytes (the last one if the process is gone)."""
        try:
            rss = rss_bytes(self._status.read_text())
        except (OSError, ValueError):  # the process is gone
            return self.samples[-1][1] if self.samples else 0
        self.samples.append((time.monotonic(), rss))
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def timeline(self, t0: float, every_s: float = 10.0) -> list[list[float]]:
        """[[s since t0, MB], ...], one sample per ``every_s`` (the first at or after each)."""
        out: list[list[float]] = []
        next_t = 0.0
        for t, rss in list(self.samples):
            if t - t0 >= next_t:
                out.append([round(t - t0, 1), round(rss / MB, 1)])
                next_t = (t - t0) // every_s * every_s + every_s
        return out


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded, or None when either is unknown (or b is 0)."""
    if a is None or not b:
        return None
    return round(a / b, 3)


def milestone(rss_bytes: int, index: IndexMemory | None) -> dict[str, Any]:
    """One memory milestone: RSS, the index's accounted bytes, and RSS less those."""
    return {
        "rss_mb": round(rss_bytes / MB, 1),
        "index_vectors": index.vectors if index else None,
        "index_mb": index.mb if index else None,
        "rss_less_index_mb": round((rss_bytes - index.bytes) / MB, 1) if index else None,
    }
