"""A link between an edge and the cloud that a benchmark can cut: a user-space middlebox.

The edge is given the middlebox's URL instead of the cloud's. Everything it sends passes
through here, so :meth:`LinkCut.block` black-holes the link without touching either process:

- **TCP** (signaling, the WebSocket transport, any HTTP): each connection is relayed to the
  cloud. While blocked nothing is read or written, so senders stall as behind a black hole
  (TCP's own retransmission would bring the bytes through once the path is back), new
  connections are accepted but not served, and the edge's heartbeat timeout decides when to
  give up and reconnect.
- **WebRTC media (UDP)** does not follow the URL: ICE sends it straight to the candidates in
  the SDP. So the middlebox rewrites the SDP of every ``POST .../session`` it relays (the one
  UDP candidate each side offers; both sides pin ICE to 127.0.0.1): the edge is told the cloud
  is at a UDP port of the middlebox and the cloud is told the edge is at another, and every
  datagram is relayed between them, as by a NAT. No other candidate is left, so no direct
  path bypasses it. While blocked every datagram is dropped (and counted): ICE consent,
  DTLS and SCTP see a dead path, exactly as on a cut link.

A block *hit* the link when it stalled an open TCP connection, held a new one or dropped a
datagram (:class:`BlockReport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final

logger = logging.getLogger(__name__)

MAX_HEAD: Final = 65_536
CHUNK: Final = 65_536
PIPE_IDLE_S: Final = 120.0
_CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$")


@dataclass
class BlockReport:
    """What one block held back: open TCP connections stalled, new ones held, datagrams
    dropped."""

    tcp_stalled: int = 0
    tcp_held: int = 0
    udp_dropped: int = 0

    @property
    def hit(self) -> bool:
        return bool(self.tcp_stalled or self.tcp_held or self.udp_dropped)


def rewrite_candidates(sdp: str, address: tuple[str, int]) -> tuple[str, tuple[str, int] | None]:
    """``sdp`` with its first UDP candidate moved to ``address`` and every other candidate
    removed (and ``c=``/``m=`` pointing there too); returns it and the candidate's original
    address (None, and the SDP unchanged, when it has no UDP candidate)."""
    lines = sdp.split("\r\n")
    found: tuple[str, int] | None = None
    out: list[str] = []
    for line in lines:
        match = _CANDIDATE.match(line)
        if match is None:
            out.append(line)
            continue
        foundation, component, transport, priority, _addr, _port, kind, rest = match.groups()
        if found is not None or transport.lower() != "udp":
            continue
        found = (match.group(5), int(match.group(6)))
        out.append(
            f"a=candidate:{foundation} {component} {transport} {priority} "
            f"{address[0]} {address[1]} typ {kind}{rest}"
        )
    if found is None:
        return sdp, None
    host, port = address
    fixed = []
    for line in out:
        if line.startswith("c=IN IP4 "):
            line = f"c=IN IP4 {host}"
        elif line.startswith("m=application "):
            parts = line.split(" ")
            parts[1] = str(port)
            line = " ".join(parts)
        fixed.append(line)
    return "\r\n".join(fixed), found


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: object) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None  # set by the pipe

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.on_datagram(data)  # type: ignore[operator]


class _UdpPipe:
    """Two sockets: the edge talks to ``edge_side`` (it thinks it is the cloud), the cloud to
    ``cloud_side`` (it thinks it is the edge)."""

    def __init__(self, cut: LinkCut) -> None:
        self.cut = cut
        self.edge_addr: tuple[str, int] | None = None
        self.cloud_addr: tuple[str, int] | None = None
        self.edge_side = _Side(self.from_edge)
        self.cloud_side = _Side(self.from_cloud)
        self.last = time.monotonic()

    async def open(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        for side in (self.edge_side, self.cloud_side):
            transport, _ = await loop.create_datagram_endpoint(
                lambda side=side: side,  # type: ignore[misc]
                local_addr=(host, 0),
            )
            side.transport = transport

    @staticmethod
    def address(side: _Side) -> tuple[str, int]:
        assert side.transport is not None
        host, port = side.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def _relay(self, data: bytes, out: _Side, to: tuple[str, int] | None) -> None:
        self.last = time.monotonic()
        if self.cut.blocked:
            self.cut.report.udp_dropped += 1
            return
        if to is not None and out.transport is not None:
            out.transport.sendto(data, to)
            self.cut.udp_relayed += 1

    def from_edge(self, data: bytes) -> None:
        self._relay(data, self.cloud_side, self.cloud_addr)

    def from_cloud(self, data: bytes) -> None:
        self._relay(data, self.edge_side, self.edge_addr)

    def close(self) -> None:
        for side in (self.edge_side, self.cloud_side):
            if side.transport is not None:
                side.transport.close()


def _headers(head: bytes) -> tuple[str, dict[str, str], list[str]]:
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields, [line for line in lines[1:] if line]


def _with_body(first: str, lines: list[str], body: bytes) -> bytes:
    drop = ("content-length", "connection", "transfer-encoding")
    kept = [line for line in lines if line.partition(":")[0].strip().lower() not in drop]
    kept += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join([first, *kept]) + "\r\n\r\n").encode("latin-1") + body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return out


class LinkCut:
    """The middlebox, on its own event loop in a thread; ``url`` is what the edge dials."""

    def __init__(self, cloud_host: str, cloud_port: int, host: str = "127.0.0.1") -> None:
        self.cloud = (cloud_host, cloud_port)
        self.host = host
        self.port = 0
        self.blocked = False
        self.report = BlockReport()
        self.sessions = 0  # SDP offers rewritten
        self.udp_relayed = 0  # datagrams relayed (WebRTC media through the middlebox)
        self._tcp: set[asyncio.Task[None]] = set()
        self._pipes: list[_UdpPipe] = []
        self._open = asyncio.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="linkcut", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def _call(self, coro: Coroutine[Any, Any, None], timeout_s: float = 10.0) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _start(self) -> None:
        self._open.set()
        self._server = await asyncio.start_server(self._accept, self.host, 0, limit=MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def block(self) -> None:
        """Black-hole the link from now on."""
        self._call(self._block())

    async def _block(self) -> None:
        self.blocked = True
        self._open.clear()
        self.report = BlockReport(tcp_stalled=len(self._tcp))

    def unblock(self) -> BlockReport:
        """Let traffic through again; what the block held back."""
        self._call(self._unblock())
        return self.report

    async def _unblock(self) -> None:
        self.blocked = False
        self._open.set()

    def close(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tcp):
            task.cancel()
        await asyncio.gather(*self._tcp, return_exceptions=True)
        for pipe in self._pipes:
            pipe.close()

    # ------------------------------------------------------------------ TCP

    async def _gate(self) -> None:
        await self._open.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.blocked:
            self.report.tcp_held += 1
        self._tcp.add(task)
        try:
            await self._gate()
            head = await reader.readuntil(b"\r\n\r\n")
            first, fields, _ = _headers(head)
            method, _, rest = first.partition(" ")
            path = rest.partition(" ")[0].split("?")[0]
            if method == "POST" and path.endswith("/session"):
                await self._offer(head, fields, reader, writer)
            else:
                await self._relay(head, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tcp.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._gate()
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._gate()  # read just before a block: held, not delivered
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _relay(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.cloud)
        up_writer.write(head)
        tasks = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            up_writer.close()

    async def _offer(
        self,
        head: bytes,
        fields: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Relay a WebRTC offer and its answer with the UDP candidates moved to a new pipe."""
        body = await reader.readexactly(int(fields.get("content-length", "0")))
        now = time.monotonic()
        for old in [p for p in self._pipes if now - p.last > PIPE_IDLE_S]:
            old.close()
            self._pipes.remove(old)
        pipe = _UdpPipe(self)
        await pipe.open(self.host)
        self._pipes.append(pipe)
        offer, pipe.edge_addr = rewrite_candidates(body.decode(), _UdpPipe.address(pipe.cloud_side))
        if pipe.edge_addr is None:
            logger.warning("an SDP offer without a UDP candidate: relayed as it is")
        first, _, lines = _headers(head)
        up_reader, up_writer = await asyncio.open_connection(*self.cloud)
        try:
            up_writer.write(_with_body(first, lines, offer.encode()))
            await up_writer.drain()
            response = await up_reader.read(-1)
        finally:
            up_writer.close()
        await self._gate()
        resp_head, sep, resp_body = response.partition(b"\r\n\r\n")
        status, resp_fields, resp_lines = _headers(resp_head + b"\r\n")
        if "chunked" in resp_fields.get("transfer-encoding", "").lower():
            resp_body = _dechunk(resp_body)
        if " 201 " in f"{status} ":
            answer, pipe.cloud_addr = rewrite_candidates(
                resp_body.decode(), _UdpPipe.address(pipe.edge_side)
            )
            resp_body = answer.encode()
            self.sessions += 1
        writer.write(_with_body(status, resp_lines, resp_body) if sep else response)
        await writer.drain()
