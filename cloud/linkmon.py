"""What the cloud knows of each edge's link, in memory, for a dashboard: :class:`LinkMonitor`.

The ingest path feeds it (see :mod:`cloud.ingest` and :mod:`cloud.session`): sessions opening
and closing (and over which transport), every data frame received (its bytes on the wire, its
latency = receive time - capture time, and for an embedding the codec it names), and every
heartbeat (the edge's backlog, rate, reconnects, ladder rung, spool bytes and health summary,
protocol v3).
Readers get plain frozen dataclasses: :meth:`LinkMonitor.overview` (one row per edge),
:meth:`LinkMonitor.series` (fixed buckets, :class:`~cloud.linkseries.LinkSample`) and
:meth:`LinkMonitor.codec_steps` (each change of rung).

Bounded: at most ``max_edges`` edges (the least recently seen is forgotten first), ``buckets``
buckets, ``latency_samples`` latencies per bucket and ``max_steps`` codec steps per edge. An
edge with every bucket filled costs about 50 bytes a bucket plus a few KiB (measured: 24 KiB
with the defaults, so about 240 MiB for 10,000 edges). Thread-safe: one lock; the ingest
threads and the event loop write, any thread reads; an overview computes its percentiles after
releasing it (2,000 busy edges: about 0.4 s, 45 ms of it under the lock). Nothing is
persisted: a restarted cloud starts empty.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cloud.linkseries import BucketSeries, LinkSample, Weighted, weighted_quantiles
from shared.messages import Heartbeat

__all__ = ["CodecStep", "EdgeLink", "LinkMonitor", "LinkSample"]

#: Microseconds since the Unix epoch (the edges' capture times use the same clock).
Clock = Callable[[], int]
#: Sessions remembered open per edge: a reconnect opens the new one before the old one closes.
_MAX_OPEN = 8


def wall_clock_us() -> int:
    return time.time_ns() // 1_000


@dataclass(frozen=True, slots=True)
class EdgeLink:
    """One edge's link now.

    ``connected_since_us`` is when its current session opened (None while disconnected);
    ``transport`` that of the current or last session (empty: not told). ``bytes_per_s`` and
    ``latency_p95_ms`` are measured by the cloud over the monitor's window (60 s by default);
    ``rung``: the ladder rung the edge reports (or, when it reports none, the codec of its last
    embedding); ``backlog``, ``rate_bps``, ``spool_bytes`` and ``reconnects`` are its last
    heartbeat's (None before the first), ``health`` its health summary (name -> number, e.g.
    ``capture_fps``, ``dropped``: see docs/wire.md; empty before the first or from an edge that
    sends none). ``sessions``: sessions the cloud saw it open.
    """

    edge_id: str
    connected: bool
    transport: str
    connected_since_us: int | None
    last_message_us: int | None
    last_heartbeat_us: int | None
    bytes_per_s: float
    latency_p95_ms: float | None
    rung: str
    backlog: int | None
    rate_bps: float | None
    spool_bytes: int | None
    reconnects: int | None
    sessions: int
    health: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CodecStep:
    """The edge moved from one ladder rung (codec id) to another at ``at_us``."""

    at_us: int
    from_rung: str
    to_rung: str


class _Edge:
    """Everything kept for one edge."""

    __slots__ = (
        "beat",
        "beat_at",
        "first_seen",
        "last_message",
        "last_transport",
        "open",
        "rung",
        "rung_from_beat",
        "rung_from_codec",
        "series",
        "sessions",
        "steps",
    )

    def __init__(self, now_us: int, series: BucketSeries, max_steps: int) -> None:
        self.first_seen = now_us
        self.last_message: int | None = None
        self.open: OrderedDict[str, tuple[str, int]] = OrderedDict()  # id -> (transport, at)
        self.last_transport = ""
        self.sessions = 0
        self.beat: Heartbeat | None = None
        self.beat_at: int | None = None
        self.rung_from_beat = ""
        self.rung_from_codec = ""
        self.rung = ""
        self.steps: deque[CodecStep] = deque(maxlen=max_steps)
        self.series = series

    def update_rung(self, now_us: int) -> str:
        """The edge's rung: the one it reports, else the codec of its last embedding (an
        edge without a ladder). Embeddings of a backlog may name older rungs, and a ladder
        dithers between two; only the reported rung says where the edge is now."""
        rung = self.rung_from_beat or self.rung_from_codec
        if rung != self.rung:
            if self.rung and rung:
                self.steps.append(CodecStep(now_us, self.rung, rung))
            self.rung = rung
        return self.rung


class LinkMonitor:
    """Per-edge link health measured by the cloud (see the module docstring)."""

    def __init__(
        self,
        *,
        bucket_s: float = 10.0,
        buckets: int = 360,
        window_s: float = 60.0,
        max_edges: int = 10_000,
        latency_samples: int = 64,
        max_steps: int = 256,
        clock: Clock = wall_clock_us,
        seed: int = 0,
    ) -> None:
        if bucket_s <= 0 or buckets < 1 or window_s <= 0 or max_edges < 1 or latency_samples < 1:
            raise ValueError("bucket_s, buckets, window_s, max_edges, latency_samples: > 0")
        self.bucket_us = max(1, round(bucket_s * 1e6))
        self.buckets = buckets
        self.window_us = round(window_s * 1e6)
        self.max_edges = max_edges
        self.latency_samples = latency_samples
        self.max_steps = max_steps
        self.clock = clock
        self._window_buckets = max(1, math.ceil(self.window_us / self.bucket_us))
        self._rng = random.Random(seed)  # reservoir sampling; seeded: reproducible
        self._edges: OrderedDict[str, _Edge] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ recording

    def _edge(self, edge_id: str, now_us: int) -> _Edge:
        """The edge's state, made most recently seen (created, evicting the least recently
        seen edge when full)."""
        edge = self._edges.get(edge_id)
        if edge is None:
            while len(self._edges) >= self.max_edges:
                self._edges.popitem(last=False)
            series = BucketSeries(
                self.bucket_us, self.buckets, self.latency_samples, self._window_buckets, self._rng
            )
            edge = self._edges[edge_id] = _Edge(now_us, series, self.max_steps)
        else:
            self._edges.move_to_end(edge_id)
        return edge

    def session_opened(self, edge_id: str, session_id: str, transport: str = "") -> None:
        """A session of the edge started (``transport``: "webrtc", "websocket" or unknown)."""
        with self._lock:
            now = self.clock()
            edge = self._edge(edge_id, now)
            edge.open[session_id] = (transport, now)
            while len(edge.open) > _MAX_OPEN:
                edge.open.popitem(last=False)
            edge.last_transport = transport
            edge.sessions += 1

    def session_closed(self, edge_id: str, session_id: str) -> None:
        """A session of the edge ended; the edge stays connected while another is open."""
        with self._lock:
            edge = self._edges.get(edge_id)
            if edge is not None:
                edge.open.pop(session_id, None)

    def data(
        self, edge_id: str, nbytes: int, capture_ts_us: int, codec_id: str | None = None
    ) -> None:
        """A data frame of ``nbytes`` (on the wire) arrived; ``codec_id``: an embedding's."""
        self.data_many(edge_id, [(nbytes, capture_ts_us, codec_id)])

    def data_many(self, edge_id: str, frames: Sequence[tuple[int, int, str | None]]) -> None:
        """Data frames that arrived together (one batch): (bytes, capture time us, codec id
        or None) each, recorded as :meth:`data` records them, under one lock acquisition.

        Ingest parses several edges' batches at once in worker threads; taking the lock per
        frame made them queue on it (most of their time on a busy cloud)."""
        if not frames:
            return
        with self._lock:
            now = self.clock()
            edge = self._edge(edge_id, now)
            edge.last_message = now
            for nbytes, capture_ts_us, codec_id in frames:
                if codec_id:
                    edge.rung_from_codec = codec_id
                rung = edge.update_rung(now)
                latency_ms = max(0.0, (now - capture_ts_us) / 1e3)  # a clock behind: 0, not < 0
                edge.series.data(now, nbytes, latency_ms, rung)

    def heartbeat(self, edge_id: str, beat: Heartbeat) -> None:
        """The edge's heartbeat: its backlog, rate and (protocol v3) link health and health
        summary (the last one is kept)."""
        with self._lock:
            now = self.clock()
            edge = self._edge(edge_id, now)
            edge.last_message = edge.beat_at = now
            edge.beat = beat
            edge.rung_from_beat = beat.rung
            edge.series.state(now, edge.update_rung(now), beat.backlog)

    # ------------------------------------------------------------------ reading

    def _link(self, edge_id: str, edge: _Edge, now: int) -> tuple[EdgeLink, list[Weighted]]:
        """The edge's row without its latency p95, and the latency samples to compute it
        from once the lock is released (the costly part of an overview)."""
        nbytes, latencies, start = edge.series.window(now, self._window_buckets)
        span_s = max(1.0, (now - max(start, edge.first_seen)) / 1e6)
        current = next(reversed(edge.open.values()), None)
        beat = edge.beat
        row = EdgeLink(
            edge_id=edge_id,
            connected=current is not None,
            transport=current[0] if current is not None else edge.last_transport,
            connected_since_us=current[1] if current is not None else None,
            last_message_us=edge.last_message,
            last_heartbeat_us=edge.beat_at,
            bytes_per_s=nbytes / span_s,
            latency_p95_ms=None,
            rung=edge.rung,
            backlog=beat.backlog if beat is not None else None,
            rate_bps=beat.rate_bps if beat is not None else None,
            spool_bytes=beat.spool_bytes if beat is not None else None,
            reconnects=beat.reconnects if beat is not None else None,
            sessions=edge.sessions,
            health=dict(beat.health) if beat is not None else {},
        )
        return row, latencies

    @staticmethod
    def _with_p95(row: EdgeLink, latencies: list[Weighted]) -> EdgeLink:
        [p95] = weighted_quantiles(latencies, (0.95,))
        return row if p95 is None else dataclasses.replace(row, latency_p95_ms=p95)

    def overview(self) -> list[EdgeLink]:
        """Every tracked edge's link now, by edge id."""
        with self._lock:
            now = self.clock()
            rows = [self._link(k, self._edges[k], now) for k in sorted(self._edges)]
        return [self._with_p95(row, latencies) for row, latencies in rows]

    def edge(self, edge_id: str) -> EdgeLink | None:
        """One edge's link now (None: not tracked)."""
        with self._lock:
            edge = self._edges.get(edge_id)
            if edge is None:
                return None
            row, latencies = self._link(edge_id, edge, self.clock())
        return self._with_p95(row, latencies)

    def series(self, edge_id: str, since_us: int | None = None) -> list[LinkSample]:
        """The edge's buckets, oldest first and evenly spaced (empty ones included), up to
        the one in progress: the last ``buckets`` of them, or from the one holding
        ``since_us``, but none before its oldest bucket kept; [] for an edge not tracked."""
        with self._lock:
            edge = self._edges.get(edge_id)
            return edge.series.samples(self.clock(), since_us) if edge is not None else []

    def codec_steps(self, edge_id: str) -> list[CodecStep]:
        """Each change of the edge's rung, oldest first (the last ``max_steps``)."""
        with self._lock:
            edge = self._edges.get(edge_id)
            return list(edge.steps) if edge is not None else []

    def __len__(self) -> int:
        with self._lock:
            return len(self._edges)
