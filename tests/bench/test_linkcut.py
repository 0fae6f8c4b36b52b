"""The fault benchmark's middlebox: SDP candidates moved to it, and a block that holds TCP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from semcom.bench.linkcut import LinkCut, rewrite_candidates

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 3912 3912 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=application 50123 DTLS/SCTP 5000",
        "c=IN IP4 127.0.0.1",
        "a=mid:0",
        "a=candidate:a1 1 udp 2130706431 127.0.0.1 50123 typ host",
        "a=candidate:a2 1 udp 2130706175 127.0.0.1 50124 typ host",
        "a=candidate:a3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
        "a=end-of-candidates",
        "a=ice-ufrag:abcd",
        "",
    ]
)


def test_rewrite_keeps_one_udp_candidate_at_the_middlebox() -> None:
    sdp, original = rewrite_candidates(OFFER, ("127.0.0.1", 40000))
    assert original == ("127.0.0.1", 50123)
    candidates = [line for line in sdp.split("\r\n") if line.startswith("a=candidate:")]
    assert candidates == ["a=candidate:a1 1 udp 2130706431 127.0.0.1 40000 typ host"]
    assert "m=application 40000 DTLS/SCTP 5000" in sdp
    assert "a=ice-ufrag:abcd" in sdp
    assert sdp.endswith("\r\n")


def test_rewrite_leaves_an_sdp_without_udp_candidates() -> None:
    sdp = "v=0\r\na=candidate:x 1 tcp 1 127.0.0.1 9 typ host\r\n"
    assert rewrite_candidates(sdp, ("127.0.0.1", 1)) == (sdp, None)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    server.close()


def test_a_block_holds_tcp_and_lets_it_through_after(echo: int) -> None:
    cut = LinkCut("127.0.0.1", echo)
    cut.start()
    try:
        with socket.create_connection(("127.0.0.1", cut.port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(4096).startswith(b"GET /")
            cut.block()
            client.sendall(b"held")
            client.settimeout(0.5)
            with pytest.raises(TimeoutError):
                client.recv(4096)
            time.sleep(0.2)
            report = cut.unblock()
            assert report.hit
            assert report.tcp_stalled == 1
            client.settimeout(5)
            assert client.recv(4096) == b"held"
    finally:
        cut.close()
