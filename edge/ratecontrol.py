"""Uplink rate control without I/O: a token bucket for the configured budget, and the
controller that walks the codec ladder from the measured backlog (for the uplink; not wired yet).

All times are seconds on a caller-supplied monotonic clock, all sizes bytes, rates bit/s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class TokenBucket:
    """Enforces ``rate_bps`` on average with bursts of at most ``burst_bytes``."""

    def __init__(self, rate_bps: float, burst_bytes: int, now: float) -> None:
        if rate_bps <= 0 or burst_bytes <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate_Bps = rate_bps / 8.0
        self.burst = float(burst_bytes)
        self._tokens = float(burst_bytes)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_Bps)
            self._at = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def delay(self, size: int, now: float) -> float:
        """Seconds to wait before ``size`` bytes may go (0 when they may go now)."""
        self._refill(now)
        missing = size - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate_Bps

    def consume(self, size: int, now: float) -> None:
        """Take ``size`` bytes of budget (may go negative for a frame larger than the burst)."""
        self._refill(now)
        self._tokens -= size


@dataclass(frozen=True)
class LadderSettings:
    high_water_s: float = 2.0  # queue delay (backlog / rate) that calls for a cheaper codec
    low_water_s: float = 0.25  # queue delay under which a richer codec may be tried
    hold_s: float = 10.0  # calm time needed before stepping back up (hysteresis)
    min_dwell_s: float = 2.0  # time between two steps down


class LadderController:
    """Chooses a rung of the codec ladder (0 = richest) from the measured queue delay.

    Steps down one rung when the backlog would take longer than ``high_water_s`` to drain at the
    measured delivery rate, at most once per ``min_dwell_s``; steps up after the delay stayed
    under ``low_water_s`` for ``hold_s``. On the last rung it also asks the emission policy to
    be less chatty (``chattiness`` < 1 stretches its check and keyframe intervals).
    """

    def __init__(self, rungs: Sequence[str], settings: LadderSettings, now: float) -> None:
        if not rungs:
            raise ValueError("the ladder needs at least one codec")
        self.rungs = tuple(rungs)
        self.settings = settings
        self.rung = 0
        self.steps: list[tuple[float, str, str]] = []  # (time, from, to)
        self._changed_at = now
        self._calm_since: float | None = now

    @property
    def codec(self) -> str:
        return self.rungs[self.rung]

    @property
    def chattiness(self) -> float:
        over = self.rung - (len(self.rungs) - 1)
        return 1.0 if over <= 0 else 0.5**over

    def update(self, backlog_bytes: int, delivered_bps: float, now: float) -> str:
        """Feed the current backlog and delivery rate; returns the codec to use now."""
        s = self.settings
        delay = backlog_bytes * 8.0 / max(delivered_bps, 1.0)
        max_rung = len(self.rungs)  # one extra "rung": the last codec with a quieter policy
        if delay > s.high_water_s:
            self._calm_since = None
            if self.rung < max_rung and now - self._changed_at >= s.min_dwell_s:
                self._step(self.rung + 1, now)
        elif delay < s.low_water_s:
            if self._calm_since is None:
                self._calm_since = now
            elif self.rung > 0 and now - self._calm_since >= s.hold_s:
                self._step(self.rung - 1, now)
                self._calm_since = now
        else:
            self._calm_since = None
        return self.rungs[min(self.rung, len(self.rungs) - 1)]

    def _step(self, rung: int, now: float) -> None:
        before = self.rungs[min(self.rung, len(self.rungs) - 1)]
        self.rung = rung
        after = self.rungs[min(rung, len(self.rungs) - 1)]
        label = after if rung < len(self.rungs) else f"{after}+quiet"
        self.steps.append((now, before, label))
        self._changed_at = now
