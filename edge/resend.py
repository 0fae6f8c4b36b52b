"""What the uplink sends again when the cloud could not decode a payload at all.

A payload the cloud cannot decode (a corrupt bundle or batch, a frame that does not decode)
gets a non-fatal ``BAD_MESSAGE`` Error with ref_seq 0: the cloud cannot tell its seqs, and
stores nothing of it. The edge cannot tell which of its payloads it was either, so every frame
in flight when such an Error arrives takes a *strike* and is sent again at once, in the same
session (the cloud ignores repeats of frames it did store):

- after one strike, unbundled: single frames in a batch (a bundle-encoding fault, or a
  corruption on the way, is cured by that);
- after two, alone: one frame per data-channel message and nothing else in flight, so the
  next seq-0 refusal names exactly that frame;
- after :data:`MAX_STRIKES`, the frame goes to the spool's quarantine with the cloud's reason
  (``semcom edge spool quarantine``), never deleted and never sent in a loop.

An Ack of a frame clears its strikes; a renumbered spool (a HelloAck naming another spool's
seqs) clears them all, since each seq then names another frame.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from shared.messages import Error, ErrorCode

#: Seq-0 refusals a frame may draw before it is set aside; the last ones while it was alone.
MAX_STRIKES: Final = 3

Frames = list[tuple[int, bytes]]  # (seq, encoded single frame)


def refuses_payload(error: Error) -> bool:
    """Whether ``error`` says the cloud could not decode a payload (seq unknown): a seq-0
    ``BAD_MESSAGE`` that is not about a control message (the cloud's complaints about a
    ``CodebookAck`` say so first; they concern no data frame)."""
    return (
        error.code is ErrorCode.BAD_MESSAGE
        and error.ref_seq == 0
        and not error.message.startswith("CodebookAck")
    )


class Resends:
    """The strikes of the frames the cloud could not decode (thread-confined: the uplink's
    loop)."""

    def __init__(self) -> None:
        self._strikes: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._strikes)

    def strikes(self, seq: int) -> int:
        return self._strikes.get(seq, 0)

    def strike(self, seqs: Iterable[int]) -> list[int]:
        """One more strike for each of ``seqs`` (in flight at a seq-0 refusal); returns those
        that reached :data:`MAX_STRIKES` (to quarantine; forgotten here)."""
        out = []
        for seq in seqs:
            n = self._strikes.get(seq, 0) + 1
            if n >= MAX_STRIKES:
                self._strikes.pop(seq, None)
                out.append(seq)
            else:
                self._strikes[seq] = n
        return out

    def clear(self, seqs: Iterable[int]) -> None:
        """The cloud stored (or refused by seq) these frames: no more strikes to keep."""
        if self._strikes:
            for seq in seqs:
                self._strikes.pop(seq, None)

    def plan(self, frames: Frames, in_flight: Collection[int]) -> tuple[Frames, bool] | None:
        """Which of ``frames`` (the spool's next) to send now, and whether they may go in a
        bundle; None: wait (a frame sent alone is in flight, or one waits to go alone).

        A frame with two strikes goes alone once nothing is in flight; any struck frame makes
        the payload unbundled."""
        if not self._strikes:
            return frames, True
        if any(self.strikes(seq) >= MAX_STRIKES - 1 for seq in in_flight):
            return None  # it is alone in flight: the next refusal names it
        alone = [f for f in frames if self.strikes(f[0]) >= MAX_STRIKES - 1]
        if alone:
            return None if in_flight else ([alone[0]], False)
        return frames, not any(self.strikes(seq) for seq, _ in frames)
