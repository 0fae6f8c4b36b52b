"""What the uplink counts: connection state, frames and bytes sent and acknowledged, refusals,
ack latencies and codec steps (read by ``semcom edge replay --report``, the daemon's logs and the
benchmarks)."""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class UplinkStats:
    state: str = "starting"  # connecting / connected / backoff / rejected / stopped
    connects: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
    sent_frames: int = 0
    sent_bytes: int = 0
    sent_bundles: int = 0  # data-channel messages sent as one bundle frame (protocol 4)
    resent_frames: int = 0  # in flight when the cloud could not decode a payload: sent again
    acked_frames: int = 0
    acked_bytes: int = 0
    rejected_frames: int = 0
    quarantined: int = 0  # refused by the cloud, set aside in the spool (never deleted)
    codebook: str = ""  # the pushed codebook in use: "pq32x8 <hash prefix>" ("": none)
    codebook_set_aside: str = ""  # a kept codebook the cloud did not have: "pq8x8 <hash>"
    codebook_errors: int = 0  # codebook chunks that were not asked for (ignored)
    ack_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    codec_steps: list[dict[str, object]] = field(default_factory=list)
    delivered_bps: float = 0.0

    def snapshot(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["failures"] = dict(self.failures)
        out.pop("ack_latency_ms")
        return out
