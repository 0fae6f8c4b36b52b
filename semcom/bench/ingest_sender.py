"""One edge's sender in the load generator of ``semcom bench ingest`` (the uplink's protocol).

Per edge it holds the encoded frames an edge's spool would hold and speaks the uplink's
protocol with the edge's own transports (:mod:`edge.transport`: WebSocket, or WebRTC data
channels), as :mod:`edge.uplink` does, without a spool file:

- Hello on the control channel, then wait for HelloAck (frames at or below its watermark are
  forgotten when it names this sender's spool id);
- frames in batches of at most ``batch_bytes`` (the edge's ``uplink.batch_bytes``), seq order,
  while fewer than ``window_bytes`` are unacknowledged and the transport's buffer drains; with
  a ``rate`` (messages/s), new frames no faster than that (resends are not held back);
- Acks settle the seqs they name (send -> ack latency, ms, per frame); an Error naming a seq
  sets that frame aside (counted as refused); heartbeats every ``heartbeat_s``; nothing heard
  for ``timeout_s`` (10 s, the edge's default) means the link is dead;
- on a lost connection (or a deliberate cut: ``cuts`` per session, spread over its stream),
  everything unacknowledged is sent again on the next connection, as the edge does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from edge.config import UplinkConfig
from edge.transport import Transport, TransportError, make_transport
from semcom.bench.ingest_stream import EdgeStream, record_bytes
from shared.codec import decode, encode
from shared.errors import DecodeError
from shared.framing import BATCH_MAGIC, MAX_BATCH_FRAMES, pack_batch, unpack_batch
from shared.messages import Ack, Envelope, Error, Heartbeat, HelloAck

logger = logging.getLogger(__name__)

RECONNECT_PAUSE_S: Final = 0.2


@dataclass(frozen=True)
class EdgePlan:
    edge_id: str
    token: str
    cloud: str  # base URL of the replica this edge talks to


@dataclass(frozen=True)
class SenderSettings:
    """How every session sends (the edge's uplink settings, and the benchmark's own)."""

    transport: str  # "websocket" or "webrtc"
    batch_bytes: int
    window_bytes: int
    heartbeat_s: float
    connect_timeout_s: float
    cuts: int  # connections each session drops on purpose, spread over its stream
    rate: float  # new messages/s per session; 0: as fast as the window allows


class _Cut(Exception):
    """A deliberate connection drop (``cuts``)."""


@dataclass
class EdgeFigures:
    edge_id: str
    produced: int
    acked: int = 0
    refused: int = 0
    sent_frames: int = 0  # resends included
    connects: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)


class EdgeSender:
    """One edge's session(s): sends its frames until every one is acknowledged."""

    def __init__(self, plan: SenderSettings, edge: EdgePlan, stream: EdgeStream, spool_id: str):
        self.plan = plan
        self.stream = stream
        self.spool_id = spool_id
        self.config = UplinkConfig(
            cloud=edge.cloud,
            token=edge.token,
            transport=plan.transport,
            ice_host_addresses=("127.0.0.1",),
            batch_bytes=plan.batch_bytes,
            window_bytes=plan.window_bytes,
            heartbeat_s=plan.heartbeat_s,
            connect_timeout_s=plan.connect_timeout_s,
        )
        n = len(stream.frames)
        self.figures = EdgeFigures(edge.edge_id, n)
        self._settled = bytearray(n + 1)  # by seq: acked or refused
        self._next = 1  # the next seq never sent
        self._resend: list[int] = []  # unacked seqs of a lost connection, in order
        self._in_flight: dict[int, float] = {}  # seq -> sent at (monotonic s)
        self._in_flight_bytes = 0
        cut_every = n / (plan.cuts + 1)
        self._cuts = [round(cut_every * (k + 1)) for k in range(plan.cuts)]
        self._wake = asyncio.Event()
        self.done = asyncio.Event()
        self._transport: Transport | None = None
        self._heard = 0.0
        self._started = 0.0  # when sending began (the rate counts from it)

    @property
    def edge_id(self) -> str:
        return self.stream.edge_id

    # ---------------------------------------------------------------- connections

    async def connect(self) -> None:
        """Open a session: transport, Hello, HelloAck."""
        transport = make_transport(self.config, self.edge_id)
        try:
            await asyncio.wait_for(self._open(transport), self.plan.connect_timeout_s)
        except BaseException:
            await transport.close()
            raise
        self._transport = transport
        self.figures.connects += 1

    async def _open(self, transport: Transport) -> None:
        await transport.connect()
        await transport.send_control(self.stream.hello)
        while True:
            for env in _decode_all(await transport.recv()):
                if isinstance(env.message, HelloAck):
                    self._on_hello_ack(env.message)
                    return
                if isinstance(env.message, Error) and env.message.fatal:
                    raise RuntimeError(f"{self.edge_id}: Hello refused: {env.message.message}")
                if isinstance(env.message, Error):  # e.g. the cloud cannot register it now
                    raise TransportError(f"Hello not answered: {env.message.message}")

    def _on_hello_ack(self, ack: HelloAck) -> None:
        if ack.spool_id == self.spool_id:
            for seq in range(1, min(ack.last_seq, len(self.stream.frames)) + 1):
                self._settle(seq, acked=True, now=None)
        elif ack.next_seq > 1:
            raise RuntimeError(
                f"{self.edge_id}: the cloud already holds seqs up to {ack.next_seq - 1} of "
                f"another spool ({ack.spool_id!r}): use fresh edge ids"
            )

    async def run(self, go: asyncio.Event) -> None:
        """After :meth:`connect`: wait for ``go``, then send until everything is settled,
        reconnecting (and resending what is unacknowledged) when a connection ends."""
        await go.wait()
        self._started = time.monotonic()
        while not self.done.is_set():
            if self._transport is None:
                try:
                    await self.connect()
                except (TransportError, TimeoutError, OSError) as exc:
                    self.figures.failures[type(exc).__name__] += 1
                    await asyncio.sleep(RECONNECT_PAUSE_S)
                    continue
            transport = self._transport
            assert transport is not None
            pause = RECONNECT_PAUSE_S
            try:
                await self._session(transport)
            except _Cut:  # at once: the old session's frames may still be committing
                self.figures.failures["cut"] += 1
                pause = 0.0
            except (TransportError, TimeoutError, OSError, DecodeError) as exc:
                self.figures.failures[type(exc).__name__] += 1
                logger.warning("%s: connection lost: %s", self.edge_id, exc)
            finally:
                await transport.close()
                self._transport = None
                self._forget_in_flight()
            if not self.done.is_set():
                await asyncio.sleep(pause)

    def _forget_in_flight(self) -> None:
        """The connection ended: what it left unacknowledged is sent again, first."""
        self._resend = sorted({*self._resend, *self._in_flight})
        self._in_flight.clear()
        self._in_flight_bytes = 0

    async def _session(self, transport: Transport) -> None:
        self._heard = time.monotonic()
        tasks = [
            asyncio.ensure_future(self._receiver(transport)),
            asyncio.ensure_future(self._sender(transport)),
            asyncio.ensure_future(self._keeper(transport)),
            asyncio.ensure_future(self.done.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---------------------------------------------------------------- traffic

    def _due(self, now: float | None = None) -> int:
        """How many new frames may be sent at ``now`` (monotonic s; ``rate``: the first at
        once, then no more than rate x elapsed)."""
        left = len(self.stream.frames) - self._next + 1
        if not self.plan.rate:
            return left
        elapsed = (time.monotonic() if now is None else now) - self._started
        allowed = int(self.plan.rate * elapsed) + 1
        return max(0, min(left, allowed - self._next + 1))

    def _take(self, new: int) -> list[int]:
        """The seqs of the next batch: resends first, then up to ``new`` new ones, within
        ``batch_bytes``."""
        frames = self.stream.frames
        size, seqs = len(BATCH_MAGIC), list[int]()
        limit = self._next + new  # the first new seq not to take
        while len(seqs) < MAX_BATCH_FRAMES:
            if self._resend:
                seq = self._resend[0]
                if self._settled[seq]:
                    self._resend.pop(0)
                    continue
            elif self._next < limit:
                seq = self._next
            else:
                break
            grown = size + record_bytes(frames[seq - 1])
            if seqs and grown > self.plan.batch_bytes:
                break
            if self._resend:
                self._resend.pop(0)
            else:
                self._next += 1
            seqs.append(seq)
            size = grown
        return seqs

    async def _sender(self, transport: Transport) -> None:
        frames, cfg = self.stream.frames, self.config
        while not self.done.is_set():
            if self._in_flight_bytes >= cfg.window_bytes or transport.buffered > cfg.batch_bytes:
                await self._sleep(0.02)
                continue
            due = self._due()
            seqs = self._take(due)
            if not seqs:
                pause = 0.25 if not self.plan.rate or self._next > len(frames) else 0.01
                await self._sleep(pause)
                continue
            payload = (
                frames[seqs[0] - 1] if len(seqs) == 1 else pack_batch(frames[s - 1] for s in seqs)
            )
            await transport.send_data(payload)
            now = time.monotonic()
            for seq in seqs:
                self._in_flight[seq] = now
                self._in_flight_bytes += len(frames[seq - 1])
            self.figures.sent_frames += len(seqs)
            if self._cuts and self._next > self._cuts[0]:  # just sent, not acknowledged yet
                self._cuts.pop(0)
                raise _Cut()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early for an ack. (Not ``wait_for``: on Python 3.11 it can swallow
        the cancellation of a task whose wait ends at the same moment, and then the session
        never ends.)"""
        self._wake.clear()
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([waiter], timeout=seconds)
        finally:
            waiter.cancel()

    async def _receiver(self, transport: Transport) -> None:
        while True:
            data = await transport.recv()
            now = self._heard = time.monotonic()
            for env in _decode_all(data):
                message = env.message
                if isinstance(message, Ack):
                    for seq in message.seqs():
                        self._settle(seq, acked=True, now=now)
                elif isinstance(message, Error):
                    if message.fatal:
                        raise RuntimeError(f"{self.edge_id}: fatal error: {message.message}")
                    logger.error("%s: cloud error %s", self.edge_id, message.message)
                    if message.ref_seq:
                        self._settle(message.ref_seq, acked=False, now=now)
            self._wake.set()

    def _settle(self, seq: int, acked: bool, now: float | None) -> None:
        if not 1 <= seq <= len(self.stream.frames) or self._settled[seq]:
            return
        self._settled[seq] = 1
        sent = self._in_flight.pop(seq, None)
        if sent is not None:
            self._in_flight_bytes -= len(self.stream.frames[seq - 1])
            if acked and now is not None:
                self.figures.latency_ms.append((now - sent) * 1e3)
        if acked:
            self.figures.acked += 1
        else:
            self.figures.refused += 1
        if self.figures.acked + self.figures.refused == self.figures.produced:
            self.done.set()

    async def _keeper(self, transport: Transport) -> None:
        cfg = self.config
        while not self.done.is_set():
            if time.monotonic() - self._heard > cfg.timeout_s:
                raise TransportError(f"nothing heard from the cloud in {cfg.timeout_s:g} s")
            left = self.figures.produced - self.figures.acked - self.figures.refused
            now = time.time_ns() // 1_000
            beat = Heartbeat(left, 0.0, max(0, self.figures.connects - 1), "", 0)
            await transport.send_control(encode(Envelope(self.edge_id, 0, now, now, beat)))
            await asyncio.sleep(cfg.heartbeat_s)


def _decode_all(data: bytes) -> list[Envelope]:
    frames = unpack_batch(data) if data.startswith(BATCH_MAGIC) else [data]
    return [decode(f) for f in frames]
