"""How the uplink reaches the cloud: WebRTC data channels, or a WebSocket where UDP is blocked.

Both implement :class:`Transport`: ``connect`` (signaling, authentication, channels open),
``send_control`` / ``send_data``, ``recv`` (the cloud's frames), ``buffered`` (bytes accepted
but not yet on the wire) and ``close``. A transport is used for one connection; the uplink
makes a new one to reconnect.

WebRTC: the offer is POSTed to ``{cloud}/v1/edges/{edge_id}/session`` with the edge's bearer
token (WHIP-style; the answer comes back in the 201 response). Two ordered, reliable data
channels: ``control`` (Hello, heartbeats, acks) and ``data`` (batches of spooled frames), so
control traffic never waits behind a data backlog. DTLS encrypts both.

WebSocket: ``{cloud}/v1/edges/{edge_id}/ws`` (ws:// or wss:// from the URL's scheme), same
token header, one connection for both kinds of traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any, Protocol

from edge.config import UplinkConfig
from edge.errors import EdgeError
from shared.addresses import host_address_picker

logger = logging.getLogger(__name__)

_CLOSED = b""  # queued by event handlers when the connection ends


class TransportError(EdgeError):
    """The connection could not be made or was lost (worth retrying)."""


class AuthRejected(EdgeError):
    """The cloud refused this edge's id or token (retrying will not help)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"cloud refused the edge (HTTP {status}): {detail}")


class Transport(Protocol):
    name: str

    async def connect(self) -> None: ...

    async def send_control(self, data: bytes) -> None: ...

    async def send_data(self, data: bytes) -> None: ...

    async def recv(self) -> bytes:
        """The next frame from the cloud; :class:`TransportError` once the connection ended."""
        ...

    @property
    def buffered(self) -> int: ...

    async def close(self) -> None: ...


def session_url(config: UplinkConfig, edge_id: str, suffix: str) -> str:
    return f"{config.cloud.rstrip('/')}/v1/edges/{edge_id}/{suffix}"


def ssl_context(config: UplinkConfig) -> ssl.SSLContext | None:
    if not config.cloud.startswith("https://"):
        return None
    ctx = ssl.create_default_context()
    if config.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(config.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot load CA file {config.ca_file}: {exc}") from None
    return ctx


def _detail(body: bytes) -> str:
    import json

    try:
        data = json.loads(body)
        if isinstance(data, dict) and "detail" in data:
            return str(data["detail"])
    except ValueError:
        pass
    return body.decode("utf-8", "replace")[:500] or "(no detail)"


def pin_ice_host_addresses(addresses: tuple[str, ...] | None) -> None:
    """Offer ICE host candidates only on ``addresses``; process-wide, ``None`` leaves aioice
    alone."""
    if addresses is None:
        return
    import aioice.ice

    aioice.ice.get_host_addresses = host_address_picker(addresses)


class WebRTCTransport:
    name = "webrtc"

    def __init__(self, config: UplinkConfig, edge_id: str) -> None:
        self.config = config
        self.edge_id = edge_id
        self.session_location: str | None = None
        self._pc: Any = None
        self._control: Any = None
        self._data: Any = None
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._closed = False

    async def connect(self) -> None:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        pin_ice_host_addresses(self.config.ice_host_addresses)
        servers = [
            RTCIceServer(list(s.urls), s.username, s.credential) for s in self.config.ice_servers
        ]
        pc = self._pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self._control = pc.createDataChannel("control", ordered=True)
        self._data = pc.createDataChannel("data", ordered=True)
        opened = [asyncio.Event(), asyncio.Event()]
        for channel, event in zip((self._control, self._data), opened, strict=True):
            channel.on("open", event.set)
            channel.on("message", self._on_message)
            channel.on("close", self._on_close)

        @pc.on("connectionstatechange")
        def _state() -> None:
            logger.debug("peer connection %s", pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                self._on_close()

        await pc.setLocalDescription(await pc.createOffer())
        answer = await self._signal(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        while not self._closed and not all(e.is_set() for e in opened):
            await asyncio.sleep(0.02)  # the caller's connect timeout bounds this
        if not all(e.is_set() for e in opened):
            raise TransportError("the WebRTC connection failed before its data channels opened")

    async def _signal(self, offer: str) -> str:
        import httpx

        url = session_url(self.config, self.edge_id, "session")
        headers = {
            "Authorization": f"Bearer {self.config.token.get_secret_value()}",
            "Content-Type": "application/sdp",
        }
        verify: Any = ssl_context(self.config) or True
        try:
            async with httpx.AsyncClient(verify=verify, timeout=10.0, trust_env=False) as client:
                response = await client.post(url, content=offer.encode(), headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"signaling to {url} failed: {exc!r}") from None
        if response.status_code in (401, 403):
            raise AuthRejected(response.status_code, _detail(response.content))
        if response.status_code != 201:
            raise TransportError(
                f"signaling to {url}: HTTP {response.status_code}: {_detail(response.content)}"
            )
        self.session_location = response.headers.get("location")
        return response.text

    def _on_message(self, message: bytes | str) -> None:
        if isinstance(message, bytes) and message:
            self._inbox.put_nowait(message)

    def _on_close(self) -> None:
        if not self._closed:
            self._closed = True
            self._inbox.put_nowait(_CLOSED)

    async def _send(self, channel: Any, data: bytes) -> None:
        if self._closed or channel is None or channel.readyState != "open":
            raise TransportError("the data channel is closed")
        channel.send(data)

    async def send_control(self, data: bytes) -> None:
        await self._send(self._control, data)

    async def send_data(self, data: bytes) -> None:
        await self._send(self._data, data)

    async def recv(self) -> bytes:
        data = await self._inbox.get()
        if data is _CLOSED or not data:
            self._inbox.put_nowait(_CLOSED)  # every later recv ends too
            raise TransportError("the WebRTC connection closed")
        return data

    @property
    def buffered(self) -> int:
        total = 0
        for channel in (self._control, self._data):
            if channel is not None:
                total += int(channel.bufferedAmount)
        return total

    async def close(self) -> None:
        self._on_close()
        if self._pc is not None:
            with contextlib.suppress(Exception):
                await self._pc.close()


class WebSocketTransport:
    name = "websocket"

    def __init__(self, config: UplinkConfig, edge_id: str) -> None:
        self.config = config
        self.edge_id = edge_id
        self._ws: Any = None

    async def connect(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        url = session_url(self.config, self.edge_id, "ws").replace("http", "ws", 1)
        headers = {"Authorization": f"Bearer {self.config.token.get_secret_value()}"}
        try:
            self._ws = await connect(
                url,
                additional_headers=headers,
                ssl=ssl_context(self.config),
                proxy=None,
                compression=None,  # frames are already compressed
                max_size=2**17,
                open_timeout=self.config.connect_timeout_s,
                ping_interval=None,  # the uplink's heartbeats do this
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise AuthRejected(status, _detail(bytes(exc.response.body or b""))) from None
            raise TransportError(f"websocket {url}: HTTP {status}") from None
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise TransportError(f"websocket {url} failed: {exc!r}") from None

    async def _send(self, data: bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise TransportError(f"websocket closed: {exc}") from None

    async def send_control(self, data: bytes) -> None:
        await self._send(data)

    async def send_data(self, data: bytes) -> None:
        await self._send(data)

    async def recv(self) -> bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                data = await self._ws.recv()
                if isinstance(data, bytes) and data:
                    return data
        except ConnectionClosed as exc:
            raise TransportError(f"websocket closed: {exc}") from None

    @property
    def buffered(self) -> int:
        transport = getattr(self._ws, "transport", None)
        return int(transport.get_write_buffer_size()) if transport is not None else 0

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()


def make_transport(config: UplinkConfig, edge_id: str) -> Transport:
    if config.transport == "websocket":
        return WebSocketTransport(config, edge_id)
    return WebRTCTransport(config, edge_id)
