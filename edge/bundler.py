"""What the uplink puts on the wire for the frames it is about to send: one bundle frame
(protocol 4, :mod:`shared.bundle`) when that is smaller than their batch, after lingering up to
``uplink.bundle_linger_ms`` for more messages.

The spool keeps single frames, so acks, refusals and quarantine stay by seq: a bundle is only
how a group of them travels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from edge.config import UplinkConfig
from edge.uplink_stats import UplinkStats
from shared.bundle import encode_bundle
from shared.codec import decode
from shared.errors import ProtocolError
from shared.framing import pack_batch

logger = logging.getLogger(__name__)

Frames = Sequence[tuple[int, bytes]]  # (seq, encoded single frame)


class Bundler:
    """Linger and payload of the uplink's sender (one per :class:`~edge.uplink.Uplink`)."""

    def __init__(
        self, config: UplinkConfig, stats: UplinkStats, clock: Callable[[], float]
    ) -> None:
        self.config = config
        self.stats = stats
        self.clock = clock
        self._since: float | None = None  # when a partial bundle was first ready

    def reset(self) -> None:
        """Nothing is waiting (the spool had nothing, or the frames were sent)."""
        self._since = None

    def linger_left(self, frames: Frames, budget: int, draining: bool) -> float:
        """Seconds still to wait for more messages before sending ``frames`` (0: send now):
        up to ``bundle_linger_ms`` from the first time a partial bundle was ready, never for
        a full one (half the batch ``budget``: a backlog) nor while draining."""
        cfg = self.config
        linger = cfg.bundle_linger_ms / 1e3 if cfg.bundles else 0.0
        full = sum(len(f) for _, f in frames) >= budget // 2
        if linger <= 0 or full or draining:
            return 0.0
        now = self.clock()
        if self._since is None:
            self._since = now
        return max(0.0, self._since + linger - now)

    def payload(self, frames: Frames, bundled: bool = True) -> bytes:
        """What goes on the wire for ``frames``: one bundle frame of their messages when that
        is smaller (and ``bundled``), else the frame or a batch of them."""
        batch = frames[0][1] if len(frames) == 1 else pack_batch(f for _, f in frames)
        if not self.config.bundles or not bundled:
            return batch
        try:
            envelopes = [decode(frame) for _, frame in frames]
            bundle = encode_bundle(
                envelopes,
                box_step=self.config.bundle_box_step,
                send_ts_us=time.time_ns() // 1_000,
            )
        except ProtocolError as exc:  # a control frame, a stranger's edge id, too large
            logger.debug("uplink: %d frames sent as a batch, not a bundle: %s", len(frames), exc)
            return batch
        if len(bundle) >= len(batch):
            return batch
        self.stats.sent_bundles += 1
        return bundle
