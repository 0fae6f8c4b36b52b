"""The uplink's pacing and adaptation: what it may send, and how much the link delivers.

- **pace**: a token bucket at ``uplink.max_rate`` (bit/s; none: unpaced) that every payload
  and heartbeat draws from, and the batch budget it implies (a tenth of a second of budget per
  data-channel message, at least 2 KiB, at most ``batch_bytes``);
- **measure**: the delivered rate (bit/s) over the last 2 s of acknowledged bytes, trusted over
  the budget only while the link (the window or the transport's buffer), not the budget, held
  the sender back;
- **adapt**: the codec ladder controller (:class:`~edge.ratecontrol.LadderController`) fed
  with the queue delay (spool backlog over the delivered rate, or the oldest frame's age) and
  the offered load (:class:`~edge.ratecontrol.LoadMeter`); each step is logged and counted in
  ``UplinkStats.codec_steps``, and the emission policy's chattiness goes to ``on_adapt``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

from edge.config import UplinkConfig
from edge.ratecontrol import LadderController, LadderSettings, LoadMeter, TokenBucket, burst_for
from edge.spool import Spool
from edge.uplink_stats import UplinkStats

logger = logging.getLogger(__name__)

#: chattiness in (0, 1] -> apply to the emission policy
AdaptCallback = Callable[[float], None]
#: Seconds of acknowledged bytes the delivered rate is measured over.
SPAN_S = 2.0


class RateAdapter:
    """One per :class:`~edge.uplink.Uplink`; used from its event loop only (``load`` from the
    pipeline's thread too: it locks)."""

    def __init__(
        self,
        config: UplinkConfig,
        stats: UplinkStats,
        now: float,
        ladder: Sequence[str] = (),
        rung_bytes: Sequence[int] = (),
        on_adapt: AdaptCallback | None = None,
    ) -> None:
        self.config = config
        self.stats = stats
        self.on_adapt = on_adapt
        self.bucket = (
            TokenBucket(config.max_rate, burst_for(config.max_rate, config.burst_bytes), now)
            if config.max_rate
            else None
        )
        self.ladder = LadderController(
            ladder or ("default",),
            LadderSettings(target_delay_s=config.target_delay_s),
            now,
            rung_bytes,
        )
        self.load = LoadMeter()
        self._chattiness = 1.0
        self._start = now
        self._acked: deque[tuple[float, int]] = deque()  # (time, bytes) of recent acks
        self._limited_at = -1e9  # last time the link, not the budget, held sending back

    def restart(self, now: float) -> None:
        """A session starts: no burst of budget saved up while disconnected."""
        if self.bucket is not None:
            self.bucket.restart(now)

    def batch_budget(self) -> int:
        """The most bytes one data-channel message should carry now."""
        budget = self.config.batch_bytes
        if self.bucket is not None:
            # a tenth of a second of budget per batch: smooth pacing, little batching delay
            budget = min(budget, max(2048, int(self.bucket.rate_Bps * 0.1)))
        return budget

    async def pace(self, size: int, clock: Callable[[], float]) -> None:
        """Wait until ``size`` bytes fit the budget, and take them."""
        if self.bucket is None:
            return
        wait = self.bucket.delay(size, clock())
        if wait > 0:
            await asyncio.sleep(wait)
        self.bucket.consume(size, clock())

    def consume(self, size: int, now: float) -> None:
        """Take ``size`` bytes of budget without waiting (heartbeats)."""
        if self.bucket is not None:
            self.bucket.consume(size, now)

    def limited(self, now: float) -> None:
        """The link (window, transport buffer), not the budget, held the sender back."""
        self._limited_at = now

    def acked(self, now: float, size: int) -> None:
        self._acked.append((now, size))

    def delivered_bps(self, now: float) -> float:
        """What the link delivers: the budget, unless acks show the link is slower."""
        while self._acked and self._acked[0][0] < now - SPAN_S:
            self._acked.popleft()
        measured = sum(b for _, b in self._acked) * 8.0 / SPAN_S
        budget = self.config.max_rate
        if now - self._limited_at < SPAN_S and measured > 0:
            return min(measured, budget) if budget else measured
        if budget:
            return budget
        return max(measured, 1e6)

    def adapt(self, now: float, spool: Spool) -> None:
        """One step of the ladder controller, from the spool's backlog and the offered load."""
        delivered = self.delivered_bps(now)
        self.stats.delivered_bps = delivered
        before = len(self.ladder.steps)
        embeddings, other = self.load.rates(now)
        delay = max(spool.pending_bytes * 8.0 / delivered, spool.oldest_age())
        self.ladder.update(delay, delivered, now, embeddings, other)
        for t, frm, to in self.ladder.steps[before:]:
            step = {"t_s": round(t - self._start, 3), "from": frm, "to": to}
            self.stats.codec_steps.append(step)
            logger.info(
                "uplink: %s -> %s (backlog %d B at %.0f bit/s)",
                frm,
                to,
                spool.pending_bytes,
                delivered,
            )
        chattiness = round(self.ladder.chattiness, 2)
        if chattiness != self._chattiness:
            self._chattiness = chattiness
            if self.on_adapt is not None:
                self.on_adapt(chattiness)
