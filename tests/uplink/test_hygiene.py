"""Hostile input at the cloud's edge-facing doors (issue 14, items 5 and 6), through a real
``semcom cloud serve`` process, its real SQLite file, a real websockets client and a real
aiortc edge: no frame poisons a session, no offer or message shape breaks one, no error body
echoes unbounded input, and only ``/healthz`` answers without a token."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgpack
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from edge.loadgen import SceneSpec
from shared.codec import PREFIX_BYTES, decode, encode
from shared.compression import Compressor
from shared.framing import pack_batch
from shared.messages import (
    Ack,
    CameraInfo,
    Envelope,
    Error,
    ErrorCode,
    FrameCounts,
    Heartbeat,
    Hello,
    HelloAck,
    Message,
)
from tests.uplink.conftest import (
    API_TOKEN,
    EDGE,
    TOKEN,
    Cloud,
    EdgeThread,
    uplink_config,
    wait_for,
)

pytestmark = pytest.mark.uplink

AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAW = Compressor(min_bytes=1 << 30)  # bodies stay plain msgpack, so tests can rewrite them
T0 = 1_764_000_000_000_000


def _frame(seq: int, message: Message, *, edge: str = EDGE) -> bytes:
    return encode(Envelope(edge, seq, T0 + seq, T0 + seq + 10, message), RAW)


def _counts(seq: int) -> bytes:
    return _frame(seq, FrameCounts("cam-01", {2: seq % 7 + 1}))


def _with_seq(frame: bytes, seq: int) -> bytes:
    """``frame`` with its header seq replaced, bypassing the encoder's bounds: the hostile bytes
    a peer can send (msgpack carries any u64)."""
    items = msgpack.unpackb(frame[PREFIX_BYTES:], strict_map_key=False)
    items[1] = seq
    body: bytes = msgpack.packb(items, use_bin_type=True)
    return frame[:PREFIX_BYTES] + body


def _hello() -> bytes:
    hello = Hello("test", "det", "enc", 64, (), (CameraInfo("cam-01", 640, 360, 10.0),), True)
    return _frame(0, hello)


@contextmanager
def _websocket(cloud: Cloud) -> Iterator[ClientConnection]:
    url = f"ws://127.0.0.1:{cloud.port}/v1/edges/{EDGE}/ws"
    with connect(url, additional_headers=AUTH, max_size=2**20, proxy=None) as ws:
        ws.send(_hello())
        assert isinstance(_replies(ws)[0], HelloAck)
        yield ws


def _replies(ws: ClientConnection, timeout: float = 10.0) -> list[Message]:
    data = ws.recv(timeout=timeout)
    assert isinstance(data, bytes), data
    return [decode(data).message]


def _until_ack(ws: ClientConnection) -> list[Message]:
    """Every reply up to and including the next Ack."""
    got: list[Message] = []
    while not got or not isinstance(got[-1], Ack):
        got += _replies(ws)
    return got


def _acked(ws: ClientConnection) -> list[int]:
    """The seqs of the next Ack, after checking nothing else came first."""
    replies = _until_ack(ws)
    assert len(replies) == 1, replies
    assert isinstance(replies[0], Ack)
    return replies[0].seqs()


def _stored_seqs(cloud: Cloud) -> list[int]:
    return sorted(seq for seq, _, _ in cloud.stored())


# ------------------------------------------------------------------ item 5: no poison frame


def test_seq_beyond_int64_is_refused_typed_and_the_session_goes_on(cloud: Cloud) -> None:
    """2**63 is a legal msgpack u64 but more than SQLite's INTEGER holds: decoding refuses it
    (BAD_MESSAGE naming Envelope.seq); the frames around it are stored and acked."""
    cloud.start()
    with _websocket(cloud) as ws:
        ws.send(pack_batch([_counts(1), _with_seq(_counts(2), 2**63), _counts(2)]))
        replies = _until_ack(ws)
        errors = [r for r in replies if isinstance(r, Error)]
        assert len(errors) == 1, replies
        assert errors[0].code == ErrorCode.BAD_MESSAGE
        assert not errors[0].fatal
        assert "Envelope.seq" in errors[0].message
        assert str(2**63) in errors[0].message
        assert isinstance(replies[-1], Ack)
        assert replies[-1].seqs() == [1, 2]
        ws.send(_with_seq(_counts(3), 2**64 - 1))
        assert isinstance(_replies(ws)[0], Error)
        ws.send(_counts(3))  # the session is still open
        assert _acked(ws) == [3]
    assert _stored_seqs(cloud) == [1, 2, 3]
    assert "OverflowError" not in cloud.log.read_text()


def test_data_message_with_seq_0_gets_a_typed_error(cloud: Cloud) -> None:
    cloud.start()
    with _websocket(cloud) as ws:
        ws.send(_counts(0))
        reply = _replies(ws)[0]
        assert isinstance(reply, Error), reply
        assert reply.code == ErrorCode.BAD_MESSAGE
        assert not reply.fatal
        assert "seq 0" in reply.message
        ws.send(_frame(0, Heartbeat(0, 0.0)))  # control messages keep seq 0
        assert isinstance(_replies(ws)[0], Heartbeat)
        ws.send(_counts(1))
        assert _acked(ws) == [1]
    assert _stored_seqs(cloud) == [1]


def test_a_frame_storage_refuses_is_refused_alone_and_the_session_goes_on(cloud: Cloud) -> None:
    """The database itself refuses one frame (a trigger stands in for any per-row failure):
    that frame gets a non-fatal INTERNAL Error naming its seq, the rest of its batch and of
    the session are stored and acked."""
    cloud.start()
    with _websocket(cloud) as ws:
        ws.send(_counts(1))
        assert _acked(ws) == [1]
        with sqlite3.connect(cloud.db) as conn:
            conn.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON journal_frames WHEN NEW.seq = 5 "
                "BEGIN SELECT RAISE(ABORT, 'poisoned frame'); END"
            )
        ws.send(pack_batch([_counts(4), _counts(5), _counts(6)]))
        replies = _until_ack(ws)
        errors = [r for r in replies if isinstance(r, Error)]
        assert [(e.code, e.ref_seq, e.fatal) for e in errors] == [(ErrorCode.INTERNAL, 5, False)]
        assert "poisoned frame" in errors[0].message
        assert isinstance(replies[-1], Ack)
        assert replies[-1].seqs() == [4, 6]
        ws.send(_counts(7))
        assert _acked(ws) == [7]
    assert _stored_seqs(cloud) == [1, 4, 6, 7]


# ------------------------------------------------------------------ item 6: transport hygiene

_AUDIO_ONLY = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 127.0.0.1\r\na=ice-ufrag:abcd\r\n"
    "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
).encode()
BAD_OFFERS = {
    "empty": b"",
    "garbage": b"hello, cloud",
    "binary": bytes(range(256)),
    "audio-only": _AUDIO_ONLY,
    "v=0 only": b"v=0\r\n",
}


def test_offers_without_a_data_channel_are_400_and_leave_the_live_edge_alone(
    cloud: Cloud, tmp_path: Path
) -> None:
    cloud.start()
    config = uplink_config(cloud, tmp_path, timeout_s=10.0)  # no reconnect under CPU load
    edge = EdgeThread(config, scene=SceneSpec(tracks_per_s=3.0, track_s=2.0), seconds=8.0)
    edge.start()
    try:
        wait_for(lambda: len(cloud.stored()) > 5, 30, "the edge to store frames")
        url = f"{cloud.url}/v1/edges/{EDGE}/session"
        for name, body in BAD_OFFERS.items():
            r = httpx.post(
                url,
                content=body,
                headers={**AUTH, "Content-Type": "application/sdp"},
                trust_env=False,
                timeout=10,
            )
            assert r.status_code == 400, (name, r.status_code, r.text)
            assert r.json()["detail"].startswith("unusable SDP offer"), name
        time.sleep(1.0)
        stored_before = len(cloud.stored())
        edge.join(60)
    finally:
        edge.stop_event.set()
        edge.join(30)
    assert edge.error is None, edge.error
    assert edge.report is not None
    assert edge.report.uplink["connects"] == 1, edge.report.uplink  # never replaced
    assert edge.report.left_in_spool == 0
    assert len(cloud.stored()) > stored_before
    metrics = cloud.metrics()
    refused = f'semcom_signaling_requests_total{{outcome="bad_request"}} {len(BAD_OFFERS)}.0'
    assert refused in metrics


def test_a_websocket_text_message_gets_a_typed_error_and_close_code_1003(cloud: Cloud) -> None:
    cloud.start()
    with _websocket(cloud) as ws:
        ws.send("hello, cloud")
        reply = _replies(ws)[0]
        assert isinstance(reply, Error), reply
        assert reply.code == ErrorCode.BAD_MESSAGE
        assert "text" in reply.message
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1003
    assert "Traceback" not in cloud.log.read_text()


def test_an_oversized_websocket_message_is_refused_by_the_size_limit(cloud: Cloud) -> None:
    """A message over ``ws_max_message_bytes`` closes the connection (1009, message too big);
    one at the protocol's limit is read and answered with a typed Error."""
    cloud.start()
    with _websocket(cloud) as ws:
        ws.send(b"SB\x01" + bytes(65_536 - 3))  # as large as a batch may be, but malformed
        reply = _replies(ws)[0]
        assert isinstance(reply, Error)
        assert reply.code == ErrorCode.BAD_MESSAGE
        ws.send(bytes(1 << 19))  # 512 KiB
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    assert cloud.stored() == []


def test_only_healthz_answers_without_a_token(cloud: Cloud) -> None:
    cloud.start()
    for path in ("/v1/health", "/metrics", "/v1/stats"):
        r = httpx.get(f"{cloud.url}{path}", trust_env=False, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
    assert httpx.get(f"{cloud.url}/healthz", trust_env=False, timeout=10).status_code == 200
    r = httpx.get(
        f"{cloud.url}/v1/health",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        trust_env=False,
        timeout=10,
    )
    assert r.status_code == 200
    assert r.json()["sessions"] == 0


def test_error_bodies_do_not_echo_unbounded_input(cloud: Cloud) -> None:
    cloud.start()
    long = "e" * 5_000
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    responses = [
        httpx.post(
            f"{cloud.url}/v1/edges/{long}/session",
            content=b"v=0",
            headers={**AUTH, "Content-Type": "application/sdp"},
            trust_env=False,
            timeout=10,
        ),
        httpx.get(f"{cloud.url}/v1/detections?camera={long}", headers=api, trust_env=False),
        httpx.post(f"{cloud.url}/v1/search", json={long: 1, "k": 3}, headers=api, trust_env=False),
        httpx.get(f"{cloud.url}/v1/detections?from={long}", headers=api, trust_env=False),
    ]
    assert [r.status_code for r in responses] == [403, 422, 422, 422]
    for r in responses:
        assert len(r.content) < 1_500, (r.request.url.path[:40], len(r.content))
        assert "e" * 200 not in r.text
    assert "5000 characters" in responses[0].json()["detail"]
