"""Which Hello an uplink session announces, which spooled frames it may send under it, and
what the cloud's HelloAck lets the spool forget.

A frame goes to the cloud only in a session announced with the Hello it was made under (its
encoder, dim, codecs and cameras decide where the cloud files it). The spool keeps that Hello
with each frame; a session takes the group of frames that holds the most important oldest one
and, once that group is sent, the uplink reconnects with the next group's Hello. Without
pending frames, the session announces the live pipeline's Hello.

Frames of a spool file written before Hellos were kept ("unknown Hello") go under the live
pipeline's Hello, the only one there is to go on; with no live pipeline (``semcom edge replay
--drain``) they are quarantined with a reason that says so, never sent under a guessed Hello.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from edge.spool import Spool, reseq
from shared.errors import ProtocolError
from shared.messages import Error, Hello, HelloAck, Message

logger = logging.getLogger(__name__)

UNKNOWN_HELLO = (
    "UNKNOWN_HELLO: spooled by a semcom that did not keep the Hello of each message, and there "
    "is no live pipeline to send it under; run the edge (`semcom edge run`) and retry it"
)


@dataclass(frozen=True)
class SessionGroup:
    """What one session announces (``hello``, with the spool's incarnation) and sends (frames
    made under the spool's Hello ids in ``hellos``; None there: an unknown Hello)."""

    hello: Hello
    hellos: tuple[int | None, ...]
    #: the live pipeline's own Hello: the cloud refusing it stops the uplink (fix the config);
    #: refusing an older group's Hello quarantines that group's frames
    live: bool


def pick(spool: Spool, live: Message | None) -> tuple[SessionGroup | None, int]:
    """The next session's group (None: nothing to announce yet), and how many frames had to
    be quarantined on the way (an unknown or damaged Hello with no live one to use)."""
    live_hello = live if isinstance(live, Hello) else None
    live_id = spool.hello_id(live_hello) if live_hello is not None else None
    quarantined = 0
    for group in spool.groups():
        if group.hello is None or group.hello == live_id:
            if live_hello is None:
                quarantined += _aside(spool, group.hello, UNKNOWN_HELLO)
                continue
            break
        try:
            kept = spool.hello(group.hello)
        except (ProtocolError, KeyError) as exc:
            quarantined += _aside(spool, group.hello, f"DAMAGED_HELLO: {exc}")
            continue
        hello = dataclasses.replace(kept, spool_id=spool.incarnation)
        return SessionGroup(hello, (group.hello,), live=False), quarantined
    if live_hello is None:
        return None, quarantined
    hello = dataclasses.replace(live_hello, spool_id=spool.incarnation)
    return SessionGroup(hello, (live_id, None), live=True), quarantined


def apply_hello_ack(spool: Spool, ack: HelloAck) -> int:
    """Forget what the cloud stored, and never what it did not (docs/wire.md, "A reset or
    replaced spool"): the watermark names this spool's seqs only when the cloud last stored
    frames of this very spool (and this spool numbered that far). Otherwise pending frames
    below the cloud's ``next_seq`` are renumbered after it, all of them, in order (a crash
    and a second HelloAck find them above it already). Returns how many were renumbered."""
    if ack.spool_id == spool.incarnation and spool.next_seq >= ack.next_seq:
        spool.ack_through(ack.last_seq)
        return 0
    first = spool.first_seq()
    if spool.next_seq >= ack.next_seq and (first is None or first >= ack.next_seq):
        return 0
    moved = spool.renumber(ack.next_seq, reseq)
    logger.warning(
        "the cloud's seqs up to %d are spool %s's, not this spool's (%s): renumbered its %d "
        "pending messages from %d on, none dropped",
        ack.next_seq - 1,
        ack.spool_id or "(unknown)",
        spool.incarnation,
        moved,
        ack.next_seq,
    )
    return moved


def refused(
    spool: Spool,
    group: SessionGroup,
    error: Error,
    fallback: Callable[[Error], int | None] | None = None,
) -> int | None:
    """The cloud refused ``group``'s Hello for its codecs (a fatal ``UNKNOWN_CODEC`` or
    ``CODEC_MISMATCH``): how many frames were set aside so that the uplink goes on with the
    next group, or None when the uplink must stop (the live pipeline's own Hello: fix the
    config; its frames stay spooled).

    ``fallback`` first (a kept codebook the cloud lacks, :mod:`edge.codebook_fallback`: the
    edge goes on without it); else an older group's frames go to the quarantine with the
    cloud's reason."""
    if fallback is not None:
        moved = fallback(error)
        if moved is not None:
            return moved
    if group.live:
        return None
    reason = f"{error.code.name}: {error.message}"
    moved = spool.quarantine(reason, hellos=group.hellos)
    logger.error(
        "the cloud refused the Hello of %d spooled messages (encoder %s): %s; quarantined",
        moved,
        group.hello.encoder,
        reason,
    )
    return moved


def _aside(spool: Spool, hello: int | None, reason: str) -> int:
    moved = spool.quarantine(reason, hellos=(hello,))
    logger.error("spool: %d messages quarantined: %s", moved, reason)
    return moved
