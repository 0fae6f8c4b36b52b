"""One edge's link as a time series of fixed buckets, bounded in memory (for :mod:`cloud.linkmon`).

Each bucket (``bucket_us`` long, aligned to the epoch) counts the data frames received in it
(bytes, frames), keeps a bounded uniform sample of their latencies (reservoir sampling, at most
``samples`` values, so a p50/p95 costs the same whatever the frame rate), the rung the edge was
on and the backlog of its last heartbeat in the bucket. Closed buckets are kept as a few packed
numbers each (about 40 bytes: parallel ``array`` columns used as a ring of ``capacity``), and
only the last few keep their latency samples, for percentiles over a short window. Buckets in
which nothing arrived are not stored; :meth:`BucketSeries.samples` reports them as empty.

Not thread-safe: :class:`cloud.linkmon.LinkMonitor` holds the lock.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_NONE = -1  # backlog column: no heartbeat in the bucket
_NAN = float("nan")


@dataclass(frozen=True, slots=True)
class LinkSample:
    """One bucket of an edge's link, as the cloud measured it.

    ``bytes_per_s`` is the goodput: bytes of data frames over the bucket's length (over the
    time elapsed so far, at least a second, for the bucket in progress). Latencies (receive
    time minus capture time, in ms) are None when no data frame arrived in the bucket; ``rung``
    is empty and ``backlog`` None when nothing told it.
    """

    start_us: int
    end_us: int
    bytes: int
    frames: int
    bytes_per_s: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    rung: str
    backlog: int | None


#: Latency samples of one bucket, and the frames each stands for.
Weighted = tuple["array[float]", float]


def weighted_quantiles(groups: Sequence[Weighted], qs: Sequence[float]) -> list[float | None]:
    """The nearest-rank ``qs`` quantiles of samples given in groups, each sample of a group
    weighing the group's weight (the smallest value with at least ``q`` of the total weight at
    or below it); None for each when there is no sample. Vectorised: an overview of thousands
    of edges holds the monitor's lock for milliseconds, not seconds."""
    groups = [(a, w) for a, w in groups if len(a)]
    if not groups:
        return [None for _ in qs]
    values = np.frombuffer(b"".join([a.tobytes() for a, _ in groups]), dtype=np.float32)
    weights = np.repeat([w for _, w in groups], [len(a) for a, _ in groups])
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    # the first value whose cumulative weight reaches q of the total (a hair under: rounding)
    at = np.searchsorted(cumulative, np.asarray(qs) * float(cumulative[-1]) * (1 - 1e-9))
    return [float(v) for v in values[order[np.minimum(at, len(order) - 1)]]]


class _Bucket:
    """The bucket in progress: counts, a latency reservoir, the rung and last backlog."""

    __slots__ = ("backlog", "bytes", "frames", "index", "latencies", "rung", "timed")

    def __init__(self, index: int, rung: str) -> None:
        self.index = index
        self.bytes = 0
        self.frames = 0
        self.timed = 0  # frames whose latency was offered to the reservoir
        self.latencies = array("f")
        self.rung = rung
        self.backlog = _NONE

    def weighted(self) -> Weighted:
        """The reservoir's values, and the frames each stands for."""
        return self.latencies, self.timed / max(1, len(self.latencies))


class BucketSeries:
    """The buckets of one edge: the one in progress, and up to ``capacity`` closed ones."""

    def __init__(
        self, bucket_us: int, capacity: int, samples: int, recent: int, rng: random.Random
    ) -> None:
        self.bucket_us = bucket_us
        self.capacity = capacity
        self.samples_per_bucket = samples
        self._rng = rng
        self._current: _Bucket | None = None
        # Closed buckets, a ring of parallel columns: oldest at _head once full.
        self._index = array("q")
        self._bytes = array("q")
        self._frames = array("q")
        self._p50 = array("f")
        self._p95 = array("f")
        self._backlog = array("q")
        self._rung: list[str] = []
        self._head = 0
        # The last closed buckets, with their latency reservoirs (for window percentiles).
        self._recent: deque[_Bucket] = deque(maxlen=recent)

    # ------------------------------------------------------------------ recording

    def _at(self, now_us: int, rung: str) -> _Bucket:
        index = now_us // self.bucket_us
        current = self._current
        if current is None or index > current.index:
            if current is not None:
                self._close(current)
            current = self._current = _Bucket(index, rung)
        return current

    def _close(self, bucket: _Bucket) -> None:
        p50, p95 = weighted_quantiles([bucket.weighted()], (0.50, 0.95))
        ints = (
            (self._index, bucket.index),
            (self._bytes, bucket.bytes),
            (self._frames, bucket.frames),
            (self._backlog, bucket.backlog),
        )
        floats = (
            (self._p50, _NAN if p50 is None else p50),
            (self._p95, _NAN if p95 is None else p95),
        )
        if len(self._rung) < self.capacity:
            for column, value in ints:
                column.append(value)
            for fcolumn, fvalue in floats:
                fcolumn.append(fvalue)
            self._rung.append(bucket.rung)
        else:
            for column, value in ints:
                column[self._head] = value
            for fcolumn, fvalue in floats:
                fcolumn[self._head] = fvalue
            self._rung[self._head] = bucket.rung
            self._head = (self._head + 1) % self.capacity
        self._recent.append(bucket)

    def data(self, now_us: int, nbytes: int, latency_ms: float | None, rung: str) -> None:
        """A data frame of ``nbytes`` arrived, ``latency_ms`` after its capture (None: unknown)."""
        bucket = self._at(now_us, rung)
        bucket.bytes += nbytes
        bucket.frames += 1
        bucket.rung = rung
        if latency_ms is None:
            return
        bucket.timed += 1
        if len(bucket.latencies) < self.samples_per_bucket:
            bucket.latencies.append(latency_ms)
        else:  # reservoir sampling: every frame of the bucket equally likely to be kept
            slot = self._rng.randrange(bucket.timed)
            if slot < self.samples_per_bucket:
                bucket.latencies[slot] = latency_ms

    def state(self, now_us: int, rung: str, backlog: int | None = None) -> None:
        """The edge's rung (and, from a heartbeat, its backlog) as of ``now_us``."""
        bucket = self._at(now_us, rung)
        bucket.rung = rung
        if backlog is not None:
            bucket.backlog = backlog

    # ------------------------------------------------------------------ reading

    def _closed(self) -> list[LinkSample]:
        n = len(self._rung)
        order = [(self._head + i) % n for i in range(n)] if n == self.capacity else range(n)
        out = []
        for i in order:
            start = self._index[i] * self.bucket_us
            p50, p95 = self._p50[i], self._p95[i]
            out.append(
                LinkSample(
                    start,
                    start + self.bucket_us,
                    self._bytes[i],
                    self._frames[i],
                    self._bytes[i] / (self.bucket_us / 1e6),
                    None if math.isnan(p50) else p50,
                    None if math.isnan(p95) else p95,
                    self._rung[i],
                    None if self._backlog[i] == _NONE else self._backlog[i],
                )
            )
        return out

    def _open(self, now_us: int) -> LinkSample | None:
        bucket = self._current
        if bucket is None:
            return None
        start = bucket.index * self.bucket_us
        end = start + self.bucket_us
        elapsed_s = max(1.0, (min(now_us, end) - start) / 1e6)
        p50, p95 = weighted_quantiles([bucket.weighted()], (0.50, 0.95))
        return LinkSample(
            start,
            end,
            bucket.bytes,
            bucket.frames,
            bucket.bytes / elapsed_s,
            p50,
            p95,
            bucket.rung,
            None if bucket.backlog == _NONE else bucket.backlog,
        )

    def samples(self, now_us: int, since_us: int | None = None) -> list[LinkSample]:
        """The last ``capacity`` buckets up to now (from the one holding ``since_us``, if
        later), oldest first, but none before the oldest bucket kept; empty buckets included,
        so the samples are evenly spaced. Nothing when nothing was ever recorded."""
        kept = self._closed()
        current = self._open(now_us)
        if current is not None:
            kept.append(current)
        now_index = now_us // self.bucket_us
        first = now_index - self.capacity + 1
        if since_us is not None:
            first = max(first, since_us // self.bucket_us)
        by_index = {s.start_us // self.bucket_us: s for s in kept}
        if not by_index:
            return []
        out = []
        for index in range(max(first, min(by_index)), now_index + 1):
            sample = by_index.get(index)
            if sample is None:
                start = index * self.bucket_us
                sample = LinkSample(start, start + self.bucket_us, 0, 0, 0.0, None, None, "", None)
            out.append(sample)
        return out

    def window(self, now_us: int, buckets: int) -> tuple[int, list[Weighted], int]:
        """Over the last ``buckets`` buckets (the one in progress included): the bytes
        received, the latency samples (safe to read without the lock) and the start of the
        oldest such bucket."""
        first = now_us // self.bucket_us - buckets + 1
        nbytes = 0
        values: list[Weighted] = []
        for bucket in self._recent:  # closed: their samples never change again
            if bucket.index >= first:
                nbytes += bucket.bytes
                values.append(bucket.weighted())
        current = self._current
        if current is not None and current.index >= first:
            nbytes += current.bytes
            samples, weight = current.weighted()
            values.append((array("f", samples), weight))  # a copy: it changes with each frame
        return nbytes, values, first * self.bucket_us
