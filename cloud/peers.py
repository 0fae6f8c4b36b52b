"""WebRTC peers: one ``RTCPeerConnection`` per connected edge, answering its offer.

The edge opens two data channels, ``control`` and ``data``. Every message from either goes
through one ordered queue into the edge's :class:`~cloud.ingest.LiveSession`; replies (acks,
errors, heartbeats) go back on ``control``. A new session of an edge replaces its old one (the
edge reconnected). A full queue answers OVERLOADED and drops the message unacknowledged, so the
edge sends it again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from cloud.config import CloudConfig
from cloud.ingest import Ingest, LiveSession, pipelined
from cloud.metrics import CloudMetrics
from shared.addresses import host_address_picker
from shared.codec import encode
from shared.messages import Envelope, Error, ErrorCode

logger = logging.getLogger(__name__)

QUEUE_MESSAGES = 256  # per edge; the edge's window keeps it far below this
#: SCTP transports of a data-channel media section (RFC 8841: UDP/DTLS/SCTP, TCP/DTLS/SCTP;
#: older offers say DTLS/SCTP).
_SCTP_PROFILES = ("UDP/DTLS/SCTP", "TCP/DTLS/SCTP", "DTLS/SCTP")


class BadOffer(ValueError):
    """An SDP offer this service cannot answer: not SDP, or no data channel to carry frames."""


def check_offer(sdp: str) -> None:
    """Refuse (:class:`BadOffer`) an offer without a usable data-channel section, before any
    peer exists: an ``m=application`` line over DTLS/SCTP (RFC 8841, ``webrtc-datachannel``)
    with ICE credentials and a DTLS fingerprint. Garbage, empty or audio-only offers never get
    a peer, so they can never replace an edge's live session."""
    from aiortc.sdp import SessionDescription

    if not sdp.startswith("v=0"):
        raise BadOffer("not an SDP offer (it must start with 'v=0')")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises whatever a bad line makes it raise
        raise BadOffer(f"unparsable SDP ({type(exc).__name__})") from None
    channels = [
        m
        for m in description.media
        if m.kind == "application"
        and m.profile in _SCTP_PROFILES
        and (m.sctp_port is not None or m.sctpmap)
    ]
    if not channels:
        raise BadOffer(
            "no data channel: an 'm=application ... UDP/DTLS/SCTP "
            "webrtc-datachannel' section with a=sctp-port (or a=sctpmap) is required"
        )
    media = channels[0]
    if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
        raise BadOffer("the data channel section has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
    if media.dtls is None or not media.dtls.fingerprints:
        raise BadOffer("the data channel section has no DTLS fingerprint (a=fingerprint)")


def pin_ice_host_addresses(addresses: tuple[str, ...] | None) -> None:
    """Offer ICE host candidates only on ``addresses``; process-wide, ``None`` leaves aioice
    alone."""
    if addresses is None:
        return
    import aioice.ice

    aioice.ice.get_host_addresses = host_address_picker(addresses)


class Peer:
    def __init__(self, pc: Any, live: LiveSession) -> None:
        self.pc = pc
        self.live = live
        self.channels: dict[str, Any] = {}
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_MESSAGES)
        self.worker: asyncio.Task[None] | None = None

    def send(self, data: bytes) -> None:
        channel = self.channels.get("control") or self.channels.get("data")
        if channel is not None and channel.readyState == "open":
            channel.send(data)

    def on_message(self, message: bytes | str) -> None:
        if not isinstance(message, bytes) or not message:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            now = time.time_ns() // 1_000
            error = Error(ErrorCode.OVERLOADED, "ingest queue full: message dropped, resend", 0)
            self.send(encode(Envelope("cloud", 0, now, now, error)))

    async def work(self) -> None:
        async def send(frame: bytes) -> None:
            self.send(frame)

        await pipelined(self.live, self.queue.get, send)
        if self.live.closed:  # a fatal Error was sent: give it a moment, then hang up
            await asyncio.sleep(0.5)
            await self.pc.close()

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()


class PeerRegistry:
    def __init__(self, config: CloudConfig, ingest: Ingest, metrics: CloudMetrics) -> None:
        self.config = config
        self.ingest = ingest
        self.metrics = metrics
        self.peers: dict[str, Peer] = {}

    def __len__(self) -> int:
        return len(self.peers)

    async def answer(self, edge_id: str, offer_sdp: str) -> tuple[str, str]:
        """Create the edge's peer from its offer; returns (session id, answer SDP).

        The offer is checked first (:func:`check_offer`); the edge's previous session is
        closed only once the new peer has accepted the offer and made its answer. Raises
        :class:`BadOffer` (before the old session is touched) for an offer it cannot answer.
        """
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        check_offer(offer_sdp)
        pin_ice_host_addresses(self.config.ice_host_addresses)
        servers = [
            RTCIceServer(list(s.urls), s.username, s.credential) for s in self.config.ice_servers
        ]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        live = self.ingest.open(edge_id, "webrtc")
        peer = Peer(pc, live)

        @pc.on("datachannel")
        def _channel(channel: Any) -> None:
            peer.channels[channel.label] = channel
            channel.on("message", peer.on_message)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.drop(edge_id, peer)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            raise BadOffer(
                f"the offer cannot be answered ({type(exc).__name__}: {exc})"[:300]
            ) from exc
        old = self.peers.get(edge_id)
        if old is not None:
            logger.info("edge %s reconnected: closing its previous session", edge_id)
            await self.drop(edge_id, old)
        self.peers[edge_id] = peer
        self.metrics.sessions.set(len(self.peers))
        peer.worker = asyncio.ensure_future(peer.work())
        logger.info("edge %s: session %s", edge_id, live.session_id)
        return live.session_id, pc.localDescription.sdp

    async def drop(self, edge_id: str, peer: Peer) -> None:
        if self.peers.get(edge_id) is peer:
            del self.peers[edge_id]
            self.metrics.sessions.set(len(self.peers))
        await peer.close()

    async def close(self, edge_id: str, session_id: str) -> bool:
        peer = self.peers.get(edge_id)
        if peer is None or peer.live.session_id != session_id:
            return False
        await self.drop(edge_id, peer)
        return True

    async def close_all(self) -> None:
        for edge_id, peer in list(self.peers.items()):
            await self.drop(edge_id, peer)
