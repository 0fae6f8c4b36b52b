"""The frames an uplink session sent and the cloud has not answered yet (acknowledged, or
refused by seq): what the send window counts, what an ack's latency is measured from, and
what is sent again after a seq-0 refusal or a reconnect."""

from __future__ import annotations

from collections.abc import KeysView, Sequence


class InFlight:
    """seq -> (its share of the bytes that went on the wire, when it was sent); one per
    :class:`~edge.uplink.Uplink`, used from its event loop only."""

    def __init__(self) -> None:
        self._sent: dict[int, tuple[int, float]] = {}
        #: bytes in flight (the send window's measure)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._sent)

    def seqs(self) -> KeysView[int]:
        return self._sent.keys()

    def add(self, frames: Sequence[tuple[int, bytes]], wire_bytes: int, now: float) -> None:
        """``frames`` went out in one payload of ``wire_bytes``: each counts its share."""
        raw = sum(len(f) for _, f in frames)
        for seq, frame in frames:
            share = len(frame) * wire_bytes // raw if raw else 0
            self._sent[seq] = (share, now)
            self.bytes += share

    def settle(self, seq: int) -> tuple[int, float] | None:
        """The cloud answered ``seq``: (its bytes, sent at), or None if it was not in flight."""
        info = self._sent.pop(seq, None)
        if info is not None:
            self.bytes -= info[0]
        return info

    def clear(self) -> list[int]:
        """Forget every frame in flight (to be sent again); returns their seqs."""
        seqs = list(self._sent)
        self._sent.clear()
        self.bytes = 0
        return seqs
