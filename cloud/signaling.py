"""Signaling and the WebSocket fallback: the HTTP face of the uplink.

- ``POST /v1/edges/{edge_id}/session`` (``Content-Type: application/sdp``, bearer token): the
  edge's WebRTC offer; ``201 Created`` with the answer SDP and a ``Location`` to DELETE.
- ``DELETE /v1/edges/{edge_id}/session/{session_id}``: hang up.
- ``GET /v1/edges/{edge_id}/ws`` (WebSocket, bearer token): the same protocol over TCP.

Credentials are checked before any peer or session exists: 401 for missing or malformed ones,
403 for an unknown edge or a wrong token, each with a JSON ``detail``. An offer that is not
UTF-8 SDP with a data-channel section is 400, also before any peer exists, and leaves the
edge's live session alone. Details never echo more than a few dozen characters of input.

The WebSocket carries binary messages only: a text message gets a ``BAD_MESSAGE`` Error and
close code 1003 (unsupported data); a message over ``ws_max_message_bytes`` is refused by the
server (close code 1009) before it is read whole.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from cloud.api.errors import clip, echo
from cloud.auth import AuthFailure, authenticate
from cloud.ingest import Ingest, LiveSession, pipelined
from cloud.metrics import CloudMetrics
from cloud.peers import BadOffer, PeerRegistry, check_offer
from shared.messages import ErrorCode

logger = logging.getLogger(__name__)

MAX_SDP_BYTES = 65_536
#: WebSocket close codes (RFC 6455, 7.4.1): 1003 unsupported data (a text message), 1008
#: policy violation (the session was ended by an Error).
WS_UNSUPPORTED_DATA = 1003
WS_POLICY_VIOLATION = 1008


def _refusal(status: int, detail: str, metrics: CloudMetrics, outcome: str) -> JSONResponse:
    metrics.signaling.labels(outcome).inc()
    headers = {"WWW-Authenticate": 'Bearer realm="semcom"'} if status == 401 else None
    return JSONResponse({"detail": clip(detail)}, status_code=status, headers=headers)


class _BinaryOnly:
    """``receive`` for :func:`pipelined` over a WebSocket: the binary messages; None at the
    first text message (the session then ends with an Error and close code 1003)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.got_text = False

    async def __call__(self) -> bytes | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        data = message.get("bytes")
        if data is None:
            self.got_text = True
            return None
        return bytes(data)


async def _refuse_text(ws: WebSocket, live: LiveSession, metrics: CloudMetrics) -> None:
    text = "text WebSocket messages are not part of the protocol: send binary frames"
    metrics.errors.labels(ErrorCode.BAD_MESSAGE.name).inc()
    await ws.send_bytes(live.session.refuse(ErrorCode.BAD_MESSAGE, text))
    await ws.close(code=WS_UNSUPPORTED_DATA, reason="binary frames only")


def build_router(
    digests: Mapping[str, bytes],
    peers: PeerRegistry,
    ingest: Ingest,
    metrics: CloudMetrics,
    max_sessions: int,
) -> APIRouter:
    router = APIRouter(prefix="/v1/edges/{edge_id}")

    def check(edge_id: str, authorization: str | None, where: str) -> AuthFailure | None:
        try:
            authenticate(digests, edge_id, authorization)
        except AuthFailure as exc:
            metrics.auth_failures.labels(exc.reason).inc()
            logger.warning("%s for edge %s refused: %s", where, echo(edge_id), exc.detail)
            return exc
        return None

    @router.post("/session", status_code=201)
    async def offer(edge_id: str, request: Request) -> Response:
        failure = check(edge_id, request.headers.get("authorization"), "session")
        if failure is not None:
            return _refusal(failure.status, failure.detail, metrics, "refused")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            return _refusal(415, "send the SDP offer as application/sdp", metrics, "bad_request")
        body = await request.body()
        if len(body) > MAX_SDP_BYTES:
            return _refusal(413, f"offer over {MAX_SDP_BYTES} bytes", metrics, "bad_request")
        try:
            sdp = body.decode("utf-8")
            check_offer(sdp)  # before any peer exists: a bad offer never touches the session
        except (UnicodeDecodeError, BadOffer) as exc:
            why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            logger.warning("offer of edge %s refused: %s", edge_id, why)
            return _refusal(400, f"unusable SDP offer: {why}", metrics, "bad_request")
        if edge_id not in peers.peers and len(peers) >= max_sessions:
            return _refusal(503, "too many connected edges; retry later", metrics, "busy")
        try:
            session_id, answer = await peers.answer(edge_id, sdp)
        except ValueError as exc:
            return _refusal(400, f"unusable SDP offer: {exc}", metrics, "bad_request")
        metrics.signaling.labels("accepted").inc()
        return Response(
            answer,
            status_code=201,
            media_type="application/sdp",
            headers={"Location": f"/v1/edges/{edge_id}/session/{session_id}"},
        )

    @router.delete("/session/{session_id}", status_code=204)
    async def hang_up(edge_id: str, session_id: str, request: Request) -> Response:
        failure = check(edge_id, request.headers.get("authorization"), "hang-up")
        if failure is not None:
            return _refusal(failure.status, failure.detail, metrics, "refused")
        if not await peers.close(edge_id, session_id):
            return JSONResponse({"detail": "no such session"}, status_code=404)
        return Response(status_code=204)

    @router.websocket("/ws")
    async def websocket(edge_id: str, ws: WebSocket) -> None:
        failure = check(edge_id, ws.headers.get("authorization"), "websocket")
        if failure is not None:
            await ws.send_denial_response(
                _refusal(failure.status, failure.detail, metrics, "refused")
            )
            return
        await ws.accept()
        metrics.signaling.labels("accepted").inc()
        live = ingest.open(edge_id, "websocket")
        metrics.sessions.inc()
        logger.info("edge %s: websocket session %s", edge_id, live.session_id)
        receive = _BinaryOnly(ws)
        try:
            await pipelined(live, receive, ws.send_bytes)
            if receive.got_text:
                await _refuse_text(ws, live, metrics)
            else:
                await ws.close(code=WS_POLICY_VIOLATION)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            metrics.sessions.dec()

    return router
