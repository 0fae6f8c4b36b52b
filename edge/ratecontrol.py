"""Uplink rate control without I/O: a token bucket for the configured budget, and the
controller that places embeddings on the codec ladder from the measured queue delay.

All times are seconds on a caller-supplied monotonic clock, all sizes bytes, rates bit/s.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

#: default bucket depth: this much of the budget (s), and at least MIN_BURST_BYTES
BURST_S = 1.0
MIN_BURST_BYTES = 1024


def burst_for(rate_bps: float, burst_bytes: int | None = None) -> int:
    """The bucket depth (bytes): ``burst_bytes`` when configured, else :data:`BURST_S` of the
    budget. A depth in time, not bytes, means the same at every rate (16 KiB is 0.13 s at
    1 Mbit/s but 2 s at 64 kbit/s). The depth is what lets budget left unused in a lull (the
    ladder leaves headroom, the scene is bursty) be spent when the load comes back: on the
    link bench a 0.1 s depth used 85 % of a 64 kbit/s budget, 1 s 97-99 %."""
    if burst_bytes is not None:
        return burst_bytes
    return max(MIN_BURST_BYTES, int(rate_bps / 8.0 * BURST_S))


class TokenBucket:
    """Enforces ``rate_bps`` on average with bursts of at most ``burst_bytes``.

    Over any interval of T seconds at most ``rate x T + burst_bytes`` go, plus the excess of
    one frame larger than the burst (it goes when the bucket is full and leaves it in debt,
    which the next sends pay back). The bucket starts empty, and :meth:`restart` empties it
    again (a new connection): budget unused while nothing could be sent is not spent in a
    burst afterwards, so from a connection's first byte on, what was sent never exceeds rate
    x elapsed by more than one frame.
    """

    def __init__(self, rate_bps: float, burst_bytes: int, now: float) -> None:
        if rate_bps <= 0 or burst_bytes <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate_Bps = rate_bps / 8.0
        self.burst = float(burst_bytes)
        self._tokens = 0.0
        self._at = now

    def restart(self, now: float) -> None:
        """Forget unused budget (a debt stays): sending starts again at the rate, no burst."""
        self._refill(now)
        self._tokens = min(self._tokens, 0.0)

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_Bps)
            self._at = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def delay(self, size: int, now: float) -> float:
        """Seconds to wait before ``size`` bytes may go (0 when they may go now); a frame
        larger than the burst waits for a full bucket (more tokens never come)."""
        self._refill(now)
        missing = min(size, self.burst) - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate_Bps

    def consume(self, size: int, now: float) -> None:
        """Take ``size`` bytes of budget (may go negative for a frame larger than the burst)."""
        self._refill(now)
        self._tokens -= size


#: bytes an Embedding frame takes beyond its code (header, ids, box, class, confidence)
EMBEDDING_OVERHEAD = 64


class LoadMeter:
    """What the pipeline offers the uplink: embeddings per second and other bytes per second,
    over the last ``window_s`` (thread-safe: the pipeline adds, the uplink reads)."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, bool, int]] = deque()
        self._lock = threading.Lock()
        self._since: float | None = None

    def add(self, now: float, embedding: bool, size: int) -> None:
        with self._lock:
            if self._since is None:
                self._since = now
            self._events.append((now, embedding, size))

    def rates(self, now: float) -> tuple[float, float]:
        """(embeddings/s, non-embedding bytes/s)."""
        with self._lock:
            while self._events and self._events[0][0] < now - self.window_s:
                self._events.popleft()
            if self._since is None:
                return 0.0, 0.0
            span = min(self.window_s, max(now - self._since, 0.5))
            embeddings = sum(1 for _, e, _ in self._events if e)
            other = sum(size for _, e, size in self._events if not e)
        return embeddings / span, other / span


@dataclass(frozen=True)
class LadderSettings:
    target_delay_s: float = 0.3  # queue delay (backlog / delivered rate) the controller keeps
    drain_s: float = 2.0  # horizon over which a backlog beyond the target is worked off
    headroom: float = 0.97  # share of the delivered rate the offered load may take
    max_speed: float = 2.0  # rungs per second the level may move


class LadderController:
    """Chooses where on the codec ladder (0 = richest) embeddings are encoded.

    No rung matches a budget exactly (f16 may offer twice the budget, int8 a little more than
    it, pq a fifth of it), so the controller keeps a continuous *level*: at 1.3, 70 % of
    embedding batches use rung 1 and 30 % rung 2 (:meth:`pick`, error diffusion, not random).

    The level is set from the measured load (feed-forward) and the queue (feedback): the
    offered rate may be ``headroom`` of the delivered rate, minus what works the queue delay
    beyond ``target_delay_s`` off within ``drain_s``. The queue delay is the larger of the
    backlog over the delivered rate and the age of the oldest waiting frame: the spool sends
    by priority, so a standing queue is made of the least important frames, and only their
    age shows how long they wait. With the embedding rate and the other
    bytes measured by a :class:`LoadMeter`, and each rung's frame size known, the controller
    takes the richest level whose predicted load fits. The link stays busy with a short
    standing queue: near-full utilisation at a bounded delay. Past the last rung the level
    makes the emission policy quieter (``chattiness`` halves per extra rung, at most 3).
    """

    MAX_QUIET = 3.0

    def __init__(
        self,
        rungs: Sequence[str],
        settings: LadderSettings,
        now: float,
        rung_bytes: Sequence[int] = (),
    ) -> None:
        if not rungs:
            raise ValueError("the ladder needs at least one codec")
        if rung_bytes and len(rung_bytes) != len(rungs):
            raise ValueError("one frame size per rung")
        self.rungs = tuple(rungs)
        self.rung_bytes = tuple(rung_bytes) or tuple(1 for _ in rungs)
        self.settings = settings
        self.level = 0.0
        self.steps: list[tuple[float, str, str]] = []  # (time, from, to) of the main rung
        self._at = now
        self._carry = 0.0
        self._lock = threading.Lock()  # pick() runs on the pipeline's threads

    @property
    def top(self) -> float:
        return len(self.rungs) - 1 + self.MAX_QUIET

    @property
    def rung(self) -> int:
        """The rung most embeddings use now."""
        return min(round(self.level), len(self.rungs) - 1)

    @property
    def codec(self) -> str:
        return self.rungs[self.rung]

    def _chattiness(self, level: float) -> float:
        over = level - (len(self.rungs) - 1)
        return 1.0 if over <= 0 else float(0.5**over)

    @property
    def chattiness(self) -> float:
        return self._chattiness(self.level)

    def label(self) -> str:
        over = self.level - (len(self.rungs) - 1)
        return self.codec + ("+quiet" if over >= 0.5 else "")

    def pick(self) -> int:
        """The rung for the next embedding batch (dithers between the rungs around the level)."""
        with self._lock:
            low = min(int(self.level), len(self.rungs) - 1)
            if low == len(self.rungs) - 1:
                return low
            self._carry += self.level - low
            if self._carry >= 1.0:
                self._carry -= 1.0
                return low + 1
            return low

    def _size(self, level: float) -> float:
        """Mean embedding frame size at ``level``."""
        last = len(self.rungs) - 1
        if level >= last:
            return float(self.rung_bytes[last])
        low = int(level)
        frac = level - low
        return (1 - frac) * self.rung_bytes[low] + frac * self.rung_bytes[low + 1]

    def _offered(self, level: float, embeddings_per_s: float, other_Bps: float) -> float:
        scale = self._chattiness(level) / self.chattiness  # quieter: fewer of everything
        return (embeddings_per_s * self._size(level) + other_Bps) * scale

    def update(
        self,
        queue_delay_s: float,
        delivered_bps: float,
        now: float,
        embeddings_per_s: float = 0.0,
        other_Bps: float = 0.0,
    ) -> float:
        """Feed the queue delay, the delivered rate and the offered load; returns the level."""
        s = self.settings
        dt = max(0.0, now - self._at)
        self._at = now
        delivered = max(delivered_bps, 1.0) / 8.0
        excess = (queue_delay_s - s.target_delay_s) * delivered  # bytes beyond the target queue
        allowed = max(s.headroom * delivered - excess / s.drain_s, 0.02 * delivered)
        wanted = self.top
        if embeddings_per_s > 0 or other_Bps > 0:
            # richest level that fits, scanned in steps of 0.05 rung
            steps = int(self.top / 0.05) + 1
            wanted = next(
                (
                    i * 0.05
                    for i in range(steps)
                    if self._offered(i * 0.05, embeddings_per_s, other_Bps) <= allowed
                ),
                self.top,
            )
        elif queue_delay_s <= s.target_delay_s:
            wanted = 0.0  # nothing offered and no queue: be ready to send the richest
        else:
            wanted = self.level
        move = max(-s.max_speed * dt, min(s.max_speed * dt, wanted - self.level))
        before = self.label()
        with self._lock:
            self.level = min(max(self.level + move, 0.0), self.top)
        after = self.label()
        if after != before:
            self.steps.append((now, before, after))
        return self.level
