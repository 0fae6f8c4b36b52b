"""Discrete-event simulation (SimPy) of N cameras sharing one uplink cell.

Model (times in s, sizes in bytes, rates in bit/s):

- every camera replays one :class:`~sim.strategies.Payload` (looped; with ``stagger`` each
  camera starts at a random point of the clip so frames do not line up across cameras);
  messages created at the same instant by one camera go out as one item (the uplink batches);
- each camera has its own FIFO queue; the cell serves the cameras with a backlog round-robin,
  one item at a time, at the link's rate at that moment (a :class:`~sim.profiles.BandwidthTrace`;
  a rate step during a transmission is integrated);
- an item is split into ``mtu_bytes`` packets; each is lost with probability ``loss``; lost
  packets are sent again after one RTT (SCTP-style retransmission), ahead of the camera's queue;
- a delivered item arrives ``rtt / 2`` plus an exponential jitter (mean ``jitter_ms``) after it
  left, and not before the camera's previous item (the data channel is ordered: head-of-line
  blocking behind a retransmission);
- with an adaptive payload (``semcom-ladder``) each camera runs the edge's own
  :class:`edge.ratecontrol.LadderController` and :class:`edge.ratecontrol.LoadMeter` fed as
  :class:`edge.uplink.Uplink` feeds them (queue delay = max(backlog / delivered rate, oldest
  age), delivered rate from acknowledged bytes over 2 s, or the camera's configured budget =
  its share of the cell); ``pick()`` chooses each embedding's rung, and past the last rung the
  controller's chattiness thins the messages a quieter policy would space out.

Outputs per run: offered bytes/s (created in ``[0, duration)``), delivered bytes/s (goodput:
arrived within ``[0, duration]``), the delivered fraction of what was created in the window
by ``duration + drain``, and end-to-end latency percentiles (creation to
arrival) over the messages created in the window, an undelivered one counting as infinitely
late. Runs are seeded and reproducible.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from edge.ratecontrol import LadderController, LadderSettings, LoadMeter
from sim.profiles import LinkProfile
from sim.strategies import Payload

ACK_SPAN_S = 2.0  # the uplink's delivered-rate window


@dataclass(frozen=True)
class SimSettings:
    cameras: int = 1
    duration_s: float = 30.0
    drain_s: float = 5.0
    seed: int = 0
    stagger: bool = True
    adapt_every_s: float = 0.25  # the uplink's control period
    target_delay_s: float = 0.3  # the ladder's queue-delay target (edge default)


@dataclass
class SimResult:
    strategy: str
    profile: str
    cameras: int
    duration_s: float
    offered_bytes: int = 0  # created in [0, duration)
    delivered_bytes: int = 0  # of those, delivered by duration + drain
    goodput_bytes: int = 0  # delivered in [0, duration], whenever created
    retransmitted_bytes: int = 0
    messages: int = 0
    latencies_s: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    rung_messages: dict[str, int] = field(default_factory=dict)
    skipped_quiet: int = 0

    @property
    def offered_Bps(self) -> float:
        return self.offered_bytes / self.duration_s

    @property
    def delivered_Bps(self) -> float:
        """Goodput: payload bytes that arrived within the run (never above the link's rate)."""
        return self.goodput_bytes / self.duration_s

    @property
    def delivered_fraction(self) -> float:
        return self.delivered_bytes / self.offered_bytes if self.offered_bytes else 1.0

    def latency_ms(self, pct: float) -> float | None:
        """The ``pct`` percentile over every message created in the window, an undelivered one
        counting as infinitely late; None when that percentile was not delivered."""
        missing = self.messages - len(self.latencies_s)
        if self.messages == 0 or missing >= self.messages:
            return None
        values = np.concatenate([self.latencies_s, np.full(max(missing, 0), np.inf)])
        value = float(np.percentile(values, pct, method="inverted_cdf"))
        return value * 1e3 if math.isfinite(value) else None

    @property
    def mean_latency_s(self) -> float:
        return float(self.latencies_s.mean()) if len(self.latencies_s) else math.nan


@dataclass
class _Item:
    cam: int
    seq: int  # per camera, creation order
    created: float
    size: int  # payload bytes (counted once)
    send: int  # bytes this round puts on the air
    messages: int
    counted: bool  # created inside the measurement window


class _Camera:
    def __init__(self, index: int, budget_bps: float) -> None:
        self.index = index
        self.queue: deque[_Item] = deque()
        self.pending_bytes = 0
        self.next_seq = 0
        self.next_deliver = 0
        self.ready: dict[int, tuple[float, _Item]] = {}
        self.last_delivery = 0.0
        self.acked: deque[tuple[float, int]] = deque()
        self.limited_at = -math.inf
        self.budget_bps = budget_bps
        self.ladder: LadderController | None = None
        self.load: LoadMeter | None = None
        self.carry = 0.0
        self.scheduled = False  # waiting in the cell's round-robin

    def delivered_bps(self, now: float) -> float:
        """As :meth:`edge.uplink.Uplink._delivered_bps` with this camera's budget."""
        while self.acked and self.acked[0][0] < now - ACK_SPAN_S:
            self.acked.popleft()
        measured = sum(b for _, b in self.acked) * 8.0 / ACK_SPAN_S
        if now - self.limited_at < ACK_SPAN_S and measured > 0:
            return min(measured, self.budget_bps)
        return self.budget_bps

    def oldest_age(self, now: float) -> float:
        return now - self.queue[0].created if self.queue else 0.0


def _arrivals(
    payload: Payload, cameras: int, horizon: float, rng: np.random.Generator, stagger: bool
) -> list[tuple[float, int, int]]:
    """(time, camera, message index) of every message created before ``horizon``, sorted."""
    clip = payload.duration_s
    n = len(payload.times_s)
    if n == 0 or clip <= 0:
        return []
    out: list[tuple[float, int, int]] = []
    idx = np.arange(n)
    for cam in range(cameras):
        phase = float(rng.uniform(0, clip)) if stagger else 0.0
        for k in range(math.ceil((horizon + phase) / clip) + 1):
            t = payload.times_s + k * clip - phase
            keep = (t >= 0) & (t < horizon)
            out.extend(
                zip(t[keep].tolist(), [cam] * int(keep.sum()), idx[keep].tolist(), strict=True)
            )
    out.sort()
    return out


def simulate(payload: Payload, profile: LinkProfile, settings: SimSettings) -> SimResult:
    """Run one strategy on one link with ``settings.cameras`` cameras."""
    import simpy

    s = settings
    if s.cameras < 1:
        raise ValueError(f"cameras must be at least 1, got {s.cameras}")
    env = simpy.Environment()
    rng = np.random.default_rng(s.seed)
    link = profile.bandwidth()
    rtt = profile.rtt_ms / 1e3
    jitter = profile.jitter_ms / 1e3
    budget = link.mean_bps / s.cameras
    cams = [_Camera(i, budget) for i in range(s.cameras)]
    adaptive = payload.rung_sizes is not None and len(payload.rungs) > 1
    if adaptive:
        assert payload.rung_sizes is not None
        emb = payload.rung_sizes[:, 0] >= 0
        rung_bytes = [
            int(payload.rung_sizes[emb, r].mean()) if emb.any() else 1
            for r in range(len(payload.rungs))
        ]
        for cam in cams:
            cam.ladder = LadderController(
                payload.rungs, LadderSettings(target_delay_s=s.target_delay_s), 0.0, rung_bytes
            )
            cam.load = LoadMeter()
    result = SimResult(payload.name, profile.name, s.cameras, s.duration_s)
    latencies: list[float] = []
    weights: list[int] = []
    active: deque[_Camera] = deque()
    state: dict[str, simpy.Event | None] = {"wake": None}

    def enqueue(cam: _Camera, item: _Item, front: bool = False) -> None:
        if not cam.scheduled:
            cam.scheduled = True
            active.append(cam)
        (cam.queue.appendleft if front else cam.queue.append)(item)
        cam.pending_bytes += item.send
        wake = state["wake"]
        if wake is not None and not wake.triggered:
            wake.succeed()

    def message_size(cam: _Camera, i: int, now: float) -> int:
        size = int(payload.sizes[i])
        if not adaptive:
            return size
        assert cam.ladder is not None
        assert cam.load is not None
        assert payload.rung_sizes is not None
        assert payload.quiet is not None
        is_embedding = payload.rung_sizes[i, 0] >= 0
        if payload.quiet[i] and cam.ladder.chattiness < 1.0:
            cam.carry += cam.ladder.chattiness
            if cam.carry < 1.0:
                result.skipped_quiet += 1
                return 0
            cam.carry -= 1.0
        if is_embedding:
            rung = cam.ladder.pick()
            size = int(payload.rung_sizes[i, rung])
            name = payload.rungs[rung]
            result.rung_messages[name] = result.rung_messages.get(name, 0) + 1
        cam.load.add(now, bool(is_embedding), size)
        return size

    def source(arrivals: list[tuple[float, int, int]]) -> simpy.events.ProcessGenerator:
        i = 0
        while i < len(arrivals):
            t, cam_i, _ = arrivals[i]
            if t > env.now:
                yield env.timeout(t - env.now)
            cam = cams[cam_i]
            size = count = 0
            while i < len(arrivals) and arrivals[i][0] == t and arrivals[i][1] == cam_i:
                n = message_size(cam, arrivals[i][2], env.now)
                if n:
                    size += n
                    count += 1
                i += 1
            if size:
                counted = t < s.duration_s
                if counted:
                    result.offered_bytes += size
                    result.messages += count
                enqueue(cam, _Item(cam_i, cam.next_seq, t, size, size, count, counted))
                cam.next_seq += 1

    def deliver(cam: _Camera, item: _Item, at: float) -> None:
        cam.ready[item.seq] = (at, item)
        while cam.next_deliver in cam.ready:
            ready, it = cam.ready.pop(cam.next_deliver)
            cam.next_deliver += 1
            when = max(ready, cam.last_delivery)
            cam.last_delivery = when
            if when <= s.duration_s:
                result.goodput_bytes += it.size
            if it.counted and when <= s.duration_s + s.drain_s:
                result.delivered_bytes += it.size
                latencies.append(when - it.created)
                weights.append(it.messages)

    def retransmit(cam: _Camera, item: _Item) -> simpy.events.ProcessGenerator:
        yield env.timeout(rtt)
        enqueue(cam, item, front=True)

    def cell() -> simpy.events.ProcessGenerator:
        while True:
            if not active:
                wake = state["wake"] = env.event()
                yield wake
                state["wake"] = None
                continue
            cam = active.popleft()
            cam.scheduled = False
            item = cam.queue.popleft()
            cam.pending_bytes -= item.send
            end = link.transmit_end(env.now, item.send * 8.0)
            yield env.timeout(end - env.now)
            if cam.queue:
                cam.limited_at = env.now
                if not cam.scheduled:
                    cam.scheduled = True
                    active.append(cam)
            packets = max(1, math.ceil(item.send / profile.mtu_bytes))
            lost = int(rng.binomial(packets, profile.loss)) if profile.loss > 0 else 0
            if lost:
                resend = min(item.send, lost * profile.mtu_bytes)
                if item.counted:
                    result.retransmitted_bytes += resend
                cam.acked.append((env.now, item.send - resend))
                item.send = resend
                env.process(retransmit(cam, item))
                continue
            cam.acked.append((env.now, item.send))
            extra = float(rng.exponential(jitter)) if jitter > 0 else 0.0
            deliver(cam, item, env.now + rtt / 2 + extra)

    def controller() -> simpy.events.ProcessGenerator:
        while True:
            yield env.timeout(s.adapt_every_s)
            now = env.now
            for cam in cams:
                assert cam.ladder is not None
                assert cam.load is not None
                delivered = cam.delivered_bps(now)
                delay = max(cam.pending_bytes * 8.0 / delivered, cam.oldest_age(now))
                embeddings, other = cam.load.rates(now)
                cam.ladder.update(delay, delivered, now, embeddings, other)

    env.process(source(_arrivals(payload, s.cameras, s.duration_s, rng, s.stagger)))
    env.process(cell())
    if adaptive:
        env.process(controller())
    env.run(until=s.duration_s + s.drain_s)
    if latencies:
        result.latencies_s = np.repeat(np.asarray(latencies), np.asarray(weights))
    return result


@dataclass(frozen=True)
class Capacity:
    """The largest camera count meeting the target, and the runs that found it."""

    strategy: str
    profile: str
    cameras: int
    capped: bool  # the search limit was reached (the cell may carry more)
    target_ms: float
    percentile: float
    runs: tuple[tuple[int, float | None, float], ...]  # (cameras, latency ms, delivered fraction)


def max_cameras(
    payload: Payload,
    profile: LinkProfile,
    settings: SimSettings,
    *,
    target_ms: float,
    percentile: float = 95.0,
    min_delivered: float = 0.99,
    limit: int = 1000,
    max_utilisation: float = 0.9,
    on_run: Callable[[int], None] | None = None,
) -> Capacity:
    """Binary search over N for the most cameras whose ``percentile`` latency stays within
    ``target_ms`` with at least ``min_delivered`` of the offered bytes delivered.

    The search is bounded by ``max_utilisation`` of what the link carries on average (mean
    rate x (1 - loss) over one camera's offered rate, on the cheapest rung for an adaptive
    payload: a queue loaded to 100 % grows without
    bound, which a run of seconds does not show) and by ``limit``; it assumes more cameras
    never do better.
    """
    runs: list[tuple[int, float | None, float]] = []

    def ok(n: int) -> bool:
        r = simulate(payload, profile, replace(settings, cameras=n))
        lat = r.latency_ms(percentile)
        runs.append((n, lat, r.delivered_fraction))
        if on_run is not None:
            on_run(n)
        return lat is not None and lat <= target_ms and r.delivered_fraction >= min_delivered

    def done(n: int, capped: bool = False) -> Capacity:
        return Capacity(
            payload.name, profile.name, n, capped, target_ms, percentile, tuple(sorted(runs))
        )

    offered_bps = payload.min_bytes_per_s * 8.0
    if offered_bps <= 0:
        return done(limit, True)
    bound = int(max_utilisation * profile.mean_rate_bps * (1 - profile.loss) / offered_bps)
    hi = min(bound, limit)
    if hi < 1 or not ok(1):
        return done(0)
    if hi == 1:
        return done(1)
    if ok(hi):
        return done(hi, hi == limit)
    lo = 1  # lo passes, hi fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return done(lo)
