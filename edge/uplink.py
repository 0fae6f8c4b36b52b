"""The uplink: sends the spool to the cloud, keeps the link up, adapts to its capacity.

One asyncio loop (in its own thread beside the pipeline's, see
:class:`edge.uplink_thread.UplinkThread`):

- **connect**: a new :class:`~edge.transport.Transport`, Hello on the control channel (the
  Hello the spooled frames to send were made under, see :mod:`edge.groups`), wait for HelloAck
  (whose watermark lets the spool forget what the cloud already has, when it names this very
  spool) or a fatal Error (codec mismatch, version), which stops the uplink with
  :class:`UplinkRejected` (for an older group's Hello: that group is quarantined instead; for
  a kept codebook the cloud lacks: ``on_codebook_refused``, :mod:`edge.codebook_fallback`);
- **send**: spooled frames, most important and oldest first, as one bundle frame (protocol 4,
  :mod:`shared.bundle`; after waiting up to ``bundle_linger_ms`` for more) or a batch under
  64 KiB when that is smaller, paced by a token bucket at ``max_rate`` (:mod:`edge.uplink_rate`)
  and held back while ``window_bytes`` are unacknowledged or the transport's own buffer is not
  draining (the link is slower than the budget);
- **receive**: Acks name the exact seqs the cloud committed, which leave the spool; a
  non-fatal Error about one seq (a frame the cloud can never accept) moves that frame to the
  spool's quarantine with the cloud's reason, counted (``semcom edge spool quarantine``); a
  payload the cloud could not decode at all (seq-0 ``BAD_MESSAGE``) has the frames in flight
  sent again at once, unbundled, then alone (:mod:`edge.resend`);
- **keep alive**: heartbeats, which also tell the cloud the link's health (backlog, delivered
  rate, reconnects, the ladder's rung and the spool's bytes: :meth:`Uplink.heartbeat`); nothing
  heard for ``timeout_s`` means the link is dead;
- **codebooks**: the cloud may offer a codebook it fitted for this edge's encoder space; the
  receiver (:mod:`edge.codebooks`) pulls it chunk by chunk on the control channel, verifies and
  keeps it (``CodebookReceiver.answer``), and the composition root switches the embeddings to
  it; heartbeats then report its codec id as the rung;
- **adapt** (:mod:`edge.uplink_rate`): the ladder controller watches the queue delay (spool
  backlog over the delivered rate); the pipeline asks ``uplink.ladder.pick()`` which codec
  each embedding batch uses, and ``on_adapt`` passes the emission policy's chattiness;
- **reconnect** on any failure with exponential backoff and jitter; in-flight frames are simply
  sent again on the next connection (the cloud ignores repeats); at once, when a session's
  Hello group is sent and another group waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from edge import groups
from edge.backoff import Backoff
from edge.bundler import Bundler
from edge.codebooks import CodebookReceiver
from edge.config import UplinkConfig
from edge.errors import HelloRefused, UplinkRejected
from edge.groups import SessionGroup
from edge.inflight import InFlight
from edge.resend import Resends, refuses_payload
from edge.spool import Priority, Spool
from edge.transport import AuthRejected, Transport, TransportError, make_transport
from edge.uplink_rate import AdaptCallback, RateAdapter
from edge.uplink_stats import UplinkStats
from shared.codec import decode, encode
from shared.errors import DecodeError
from shared.framing import BATCH_MAGIC, unpack_batch
from shared.messages import (
    Ack,
    CodebookChunk,
    CodebookOffer,
    Envelope,
    Error,
    ErrorCode,
    Heartbeat,
    HelloAck,
    Message,
)

logger = logging.getLogger(__name__)

TransportFactory = Callable[[UplinkConfig, str], Transport]
#: the edge's health summary for heartbeats (name -> number, see Heartbeat.health)
HealthSummary = Callable[[], Mapping[str, float]]


#: Seconds after a seq-0 OVERLOADED Error that the frames then in flight and still unanswered
#: are sent again (enough for the cloud's queue to drain and the others' acks to arrive).
OVERLOAD_RESEND_S = 1.0
#: Fatal errors about a Hello's content (its codecs), not about this edge or its software.
_GROUP_REFUSALS = frozenset({ErrorCode.UNKNOWN_CODEC, ErrorCode.CODEC_MISMATCH})


class Uplink:
    def __init__(
        self,
        config: UplinkConfig,
        edge_id: str,
        spool: Spool,
        hello: Callable[[], Message | None],
        *,
        ladder: Sequence[str] = (),
        rung_bytes: Sequence[int] = (),
        on_adapt: AdaptCallback | None = None,
        transport_factory: TransportFactory = make_transport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.edge_id = edge_id
        self.spool = spool
        self.hello = hello
        self.transport_factory = transport_factory
        self.clock = clock
        self.stats = UplinkStats()
        #: what heartbeats report as ``health`` (set by the composition root: edge.metrics)
        self.health: HealthSummary | None = None
        #: called with each acknowledged frame's send-to-ack latency (ms)
        self.on_ack_latency: Callable[[float], None] | None = None
        #: takes the codebooks the cloud pushes (None: offers are refused by silence)
        self.codebooks: CodebookReceiver | None = None
        #: the codec id of the pushed codebook the embeddings use ("": none): heartbeats
        #: report it as the rung
        self.codebook = ""
        #: a fatal Hello refusal -> how many frames it set aside, when it was about the
        #: codebook in use and the edge fell back to a universal rung (None: not that case,
        #: the uplink stops); see edge.codebook_fallback
        self.on_codebook_refused: Callable[[Error], int | None] | None = None
        #: pacing (token bucket), delivered rate, codec ladder and chattiness
        self.rate = RateAdapter(config, self.stats, clock(), ladder, rung_bytes, on_adapt)
        self.ladder = self.rate.ladder  # the pipeline asks it which rung each batch uses
        self._rung_known = bool(ladder)  # without a ladder the rung says nothing
        self._in_flight = InFlight()  # sent, not yet answered
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._halt: asyncio.Event | None = None  # set by request_stop only: ends a backoff
        self._drain_deadline: float | None = None
        self._group: SessionGroup | None = None  # what this session announced and sends
        self._regroup = False  # the session ended to announce another Hello group
        self.bundler = Bundler(config, self.stats, self.clock)  # linger and bundle frames
        self.resends = Resends()  # frames in payloads the cloud could not decode

    @property
    def rung_known(self) -> bool:
        """Whether the uplink has a codec ladder (without one, the rung says nothing)."""
        return self._rung_known

    # ------------------------------------------------------------------ control from outside

    def spooled(self, priority: Priority, size: int) -> None:
        """Thread-safe: the pipeline spooled a frame (feeds the load meter, wakes the sender)."""
        embedding = priority in (Priority.FIRST_SIGHT, Priority.EMBEDDING_UPDATE)
        self.rate.load.add(self.clock(), embedding, size)
        self.wake()

    def wake(self) -> None:
        """Thread-safe: new frames were spooled."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def request_stop(self, drain_s: float = 0.0) -> None:
        """Thread-safe: stop now (``drain_s`` 0) or once the spool is empty, at most
        ``drain_s`` seconds from now."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def _request() -> None:
            if drain_s <= 0:
                assert self._stop is not None
                self._stop.set()
            else:
                self._drain_deadline = self.clock() + drain_s
            assert self._wake is not None
            assert self._halt is not None
            self._wake.set()
            self._halt.set()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_request)

    def _done(self) -> bool:
        assert self._stop is not None
        if self._stop.is_set():
            return True
        deadline = self._drain_deadline
        return deadline is not None and (self.spool.pending == 0 or self.clock() >= deadline)

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        """Connect, send and reconnect until stopped; raises :class:`UplinkRejected` when the
        cloud refuses this edge for good."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._halt = asyncio.Event()
        cfg = self.config
        backoff = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s)
        try:
            while not self._done():
                hello = await self._next_hello()
                if hello is None:  # nothing spooled, and the pipeline has no Hello yet
                    await self._sleep(0.1)
                    continue
                transport = self.transport_factory(cfg, self.edge_id)
                self.stats.state = "connecting"
                try:
                    await asyncio.wait_for(self._open(transport, hello), cfg.connect_timeout_s)
                    backoff.reset()
                    self.stats.state = "connected"
                    self.stats.connects += 1
                    logger.info(
                        "uplink connected to %s over %s (%d messages spooled)",
                        cfg.cloud,
                        transport.name,
                        self.spool.pending,
                    )
                    await self._session(transport)
                except AuthRejected as exc:
                    self.stats.state = "rejected"
                    self.stats.last_error = str(exc)
                    raise UplinkRejected(str(exc)) from None
                except HelloRefused:
                    pass  # that group's frames are quarantined (logged); the next one at once
                except UplinkRejected as exc:
                    self.stats.state = "rejected"
                    self.stats.last_error = str(exc)
                    raise
                except (TransportError, TimeoutError, OSError, DecodeError) as exc:
                    reason = str(exc) or type(exc).__name__
                    if isinstance(exc, TimeoutError):
                        reason = f"no connection within {cfg.connect_timeout_s:g} s"
                    self.stats.failures[type(exc).__name__] += 1
                    self.stats.last_error = reason
                finally:
                    await transport.close()
                    self._in_flight.clear()  # sent again on the next connection
                    self._in_flight = InFlight()  # a take-back scheduled by this session: void
                if self._done():
                    break
                if self._regroup:  # this Hello's frames are done: the next group's, at once
                    self._regroup = False
                    continue
                pause = backoff.next_pause()
                self.stats.state = "backoff"
                logger.warning(
                    "uplink to %s: %s; retrying in %.1f s", cfg.cloud, self.stats.last_error, pause
                )
                await self._pause(pause)
        finally:
            if self.stats.state != "rejected":
                self.stats.state = "stopped"

    async def _pause(self, seconds: float) -> None:
        """Back off for ``seconds``: new messages do not shorten it, only a stop request (or
        the drain deadline, when it comes first) does."""
        assert self._halt is not None
        end = self.clock() + seconds
        while not self._done():
            deadline = self._drain_deadline
            left = min(end, deadline if deadline is not None else end) - self.clock()
            if left <= 0:
                return
            self._halt.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._halt.wait(), left)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early for new frames, an ack or a stop request."""
        assert self._wake is not None
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _frame(self, message: Message) -> bytes:
        now = time.time_ns() // 1_000
        return encode(Envelope(self.edge_id, 0, now, now, message))

    async def _next_hello(self) -> Message | None:
        """The Hello of the next session: the one the most important spooled frames were made
        under, or the live pipeline's (see :mod:`edge.groups`); None: nothing to announce."""
        self._group, moved = await asyncio.to_thread(groups.pick, self.spool, self.hello())
        self.stats.quarantined += moved
        return self._group.hello if self._group is not None else None

    async def _open(self, transport: Transport, hello: Message) -> None:
        await transport.connect()
        await transport.send_control(self._frame(hello))
        while True:
            for env in self._decode_all(await transport.recv()):
                if isinstance(env.message, HelloAck):
                    await self._on_hello_ack(env.message)
                    return
                if isinstance(env.message, Error):
                    await self._on_hello_refused(env.message)
                    self._on_error(env.message)

    async def _on_hello_refused(self, error: Error) -> None:
        """The cloud refused this session's Hello: an older group's (its codecs) is set aside
        and the uplink goes on with the next group at once, as for a kept codebook the cloud
        lacks (:func:`edge.groups.refused`); else the uplink stops (:meth:`_on_error`)."""
        group = self._group
        if group is None or not error.fatal or error.code not in _GROUP_REFUSALS:
            return
        moved = await asyncio.to_thread(
            groups.refused, self.spool, group, error, self.on_codebook_refused
        )
        if moved is None:
            return
        self.stats.quarantined += moved
        self.stats.rejected_frames += moved
        self._regroup = True
        raise HelloRefused(f"{error.code.name}: {error.message}")

    async def _on_hello_ack(self, ack: HelloAck) -> None:
        if await asyncio.to_thread(groups.apply_hello_ack, self.spool, ack):
            self.resends = Resends()  # renumbered: the struck seqs name other frames now

    def _decode_all(self, data: bytes) -> list[Envelope]:
        try:
            frames = unpack_batch(data) if data.startswith(BATCH_MAGIC) else [data]
        except DecodeError as exc:
            logger.warning("undecodable batch from the cloud: %s", exc)
            return []
        out = []
        for frame in frames:
            try:
                out.append(decode(frame))
            except DecodeError as exc:
                logger.warning("undecodable frame from the cloud: %s", exc)
        return out

    def _on_error(self, error: Error) -> None:
        text = f"cloud error {error.code.name}: {error.message}"
        if error.fatal:
            raise UplinkRejected(text)
        logger.error("%s%s", text, f" (seq {error.ref_seq})" if error.ref_seq else "")

    # ------------------------------------------------------------------ one connection

    async def _session(self, transport: Transport) -> None:
        self._heard = self.clock()
        self.rate.restart(self._heard)
        tasks = [
            asyncio.ensure_future(self._receiver(transport)),
            asyncio.ensure_future(self._sender(transport)),
            asyncio.ensure_future(self._keeper(transport)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise a failure
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receiver(self, transport: Transport) -> None:
        while True:
            data = await transport.recv()
            self._heard = self.clock()
            for env in self._decode_all(data):
                message = env.message
                if isinstance(message, Ack):
                    await self._on_ack(message)
                elif isinstance(message, (CodebookOffer, CodebookChunk)):
                    await self._on_codebook(transport, message)
                elif isinstance(message, Error):
                    self._on_error(message)
                    if refuses_payload(message):
                        await self._undecodable(message)
                    elif message.code is ErrorCode.OVERLOADED and not message.ref_seq:
                        self._overloaded()
                    elif message.ref_seq:
                        # the cloud will never take this frame: set it aside (not deleted)
                        # rather than loop on it; an operator decides (semcom edge spool)
                        self._in_flight.settle(message.ref_seq)
                        self.resends.clear([message.ref_seq])
                        reason = f"{message.code.name}: {message.message}"
                        await self._set_aside([message.ref_seq], reason)

    async def _undecodable(self, error: Error) -> None:
        """The cloud could not decode a payload (seq unknown, nothing of it stored): every frame
        in flight is sent again at once, unbundled, then alone; one refused so
        :data:`~edge.resend.MAX_STRIKES` times is quarantined (see :mod:`edge.resend`)."""
        seqs = self._in_flight.clear()
        self.stats.resent_frames += len(seqs)
        hopeless = self.resends.strike(seqs)
        assert self._wake is not None
        self._wake.set()
        if hopeless:
            reason = (
                "BAD_MESSAGE: the cloud could not decode this frame, sent alone or unbundled "
                f"after a first refusal: {error.message}"
            )
            await self._set_aside(hopeless, reason)

    def _overloaded(self) -> None:
        """The cloud dropped one message unacknowledged (its queue was full; which one, it
        cannot say): the frames still unanswered :data:`OVERLOAD_RESEND_S` later, in this
        session, go again (the others were acked meanwhile; the cloud ignores repeats)."""
        seqs = list(self._in_flight.seqs())
        in_flight = self._in_flight

        def take_back() -> None:
            back = [seq for seq in seqs if in_flight.settle(seq) is not None]
            self.stats.resent_frames += len(back)
            if back and self._wake is not None:
                self._wake.set()

        asyncio.get_running_loop().call_later(OVERLOAD_RESEND_S, take_back)

    async def _set_aside(self, seqs: list[int], reason: str) -> None:
        """Frames the cloud will never take go to the spool's quarantine, counted and logged."""
        moved = await asyncio.to_thread(self.spool.quarantine, reason, seqs)
        self.stats.rejected_frames += moved
        self.stats.quarantined += moved
        if moved:
            logger.error("seqs %s quarantined: %s", seqs, reason)

    async def _on_codebook(
        self, transport: Transport, message: CodebookOffer | CodebookChunk
    ) -> None:
        """A codebook offer or chunk: answered on the control channel (see edge.codebooks)."""
        receiver = self.codebooks
        if receiver is None:
            return
        ack = await asyncio.to_thread(receiver.answer, message)
        self.stats.codebook_errors = receiver.ignored
        if ack is not None:
            await transport.send_control(self._frame(ack))

    async def _on_ack(self, ack: Ack) -> None:
        seqs = ack.seqs()
        await asyncio.to_thread(self.spool.ack, seqs)
        self.resends.clear(seqs)
        now = self.clock()
        acked = 0
        for seq in seqs:
            info = self._in_flight.settle(seq)
            if info is not None:
                acked += info[0]
                latency_ms = (now - info[1]) * 1e3
                self.stats.ack_latency_ms.append(latency_ms)
                self.stats.acked_frames += 1
                if self.on_ack_latency is not None:
                    self.on_ack_latency(latency_ms)
        self.stats.acked_bytes += acked
        self.rate.acked(now, acked)
        assert self._wake is not None
        self._wake.set()

    async def _sender(self, transport: Transport) -> None:
        cfg = self.config
        assert self._wake is not None
        while True:
            if self._done():
                return
            if self._in_flight.bytes >= cfg.window_bytes or transport.buffered > cfg.batch_bytes:
                self.rate.limited(self.clock())
                await self._sleep(0.02)
                continue
            hellos = self._group.hellos if self._group is not None else None
            frames = await asyncio.to_thread(
                self.spool.peek, self.rate.batch_budget(), tuple(self._in_flight.seqs()), hellos
            )
            if not frames and not self._in_flight and await asyncio.to_thread(self._others_wait):
                self._regroup = True  # this Hello's frames are sent: end, announce the next
                return
            if not frames:
                self.bundler.reset()
                await self._sleep(0.25)
                continue
            plan = self.resends.plan(frames, self._in_flight.seqs())
            if plan is None:  # a frame the cloud could not decode waits to go alone
                await self._sleep(0.02)
                continue
            frames, bundle = plan
            draining = self._drain_deadline is not None or not bundle
            wait_more = self.bundler.linger_left(frames, self.rate.batch_budget(), draining)
            if wait_more > 0:
                await self._sleep(wait_more)  # new frames wake it: peek again, fuller
                continue
            self.bundler.reset()
            payload = await asyncio.to_thread(self.bundler.payload, frames, bundle)
            size = len(payload)
            await self.rate.pace(size, self.clock)
            await transport.send_data(payload)
            self._in_flight.add(frames, size, self.clock())
            self.stats.sent_frames += len(frames)
            self.stats.sent_bytes += size

    def _others_wait(self) -> bool:
        """Whether frames of another Hello than this session's wait in the spool (a frame of
        this session's own group spooled just after the read is no reason to reconnect)."""
        if self._group is None:
            return False
        mine = set(self._group.hellos)
        return any(group.hello not in mine for group in self.spool.groups())

    async def _keeper(self, transport: Transport) -> None:
        cfg = self.config
        next_beat = self.clock()
        while True:
            if self._done():
                return
            now = self.clock()
            if now - self._heard > cfg.timeout_s:
                raise TransportError(f"nothing heard from the cloud in {cfg.timeout_s:g} s")
            if now >= next_beat:
                beat = self._frame(self.heartbeat(now))
                self.rate.consume(len(beat), now)  # never delayed, but within the budget
                await transport.send_control(beat)
                next_beat = now + cfg.heartbeat_s
            self.rate.adapt(now, self.spool)
            await asyncio.sleep(0.25)

    def heartbeat(self, now: float) -> Heartbeat:
        """The heartbeat to send at ``now``: spooled messages, the delivered rate, the
        reconnects so far (sessions opened after the first: after a failure, or to announce
        another Hello group), the rung most embeddings use now (empty without a ladder) and
        the bytes of frames spooled; and the edge's health summary (:attr:`health`)."""
        link = (
            min(self.spool.pending, 2**32 - 1),
            min(self.rate.delivered_bps(now), 1e12),
            min(max(0, self.stats.connects - 1), 2**32 - 1),
            self.codebook or (self.ladder.codec if self._rung_known else ""),
            self.spool.pending_bytes,
        )
        if self.health is not None:
            try:
                return Heartbeat(*link, dict(self.health()))
            except Exception:  # a bug in a summary must not end the session: beat without it
                logger.exception("the health summary failed; heartbeat sent without it")
        return Heartbeat(*link)
