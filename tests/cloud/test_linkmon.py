"""LinkMonitor: buckets, goodput, latency percentiles, bounds, codec steps and session state,
on an injected clock."""

from __future__ import annotations

import threading
from array import array

import pytest

from cloud.linkmon import CodecStep, LinkMonitor
from cloud.linkseries import weighted_quantiles
from shared.messages import Heartbeat

S = 1_000_000  # one second in microseconds
T0 = 1_764_000_000 * S  # a multiple of every bucket length used here


class Clock:
    def __init__(self, at_us: int = T0) -> None:
        self.now = at_us

    def __call__(self) -> int:
        return self.now

    def at(self, seconds: float) -> Clock:
        self.now = T0 + round(seconds * S)
        return self


def monitor(clock: Clock, **kw: object) -> LinkMonitor:
    return LinkMonitor(clock=clock, **kw)  # type: ignore[arg-type]


def beat(backlog: int = 0, rung: str = "", reconnects: int = 0, spool: int = 0) -> Heartbeat:
    return Heartbeat(backlog, 1e6, reconnects, rung, spool)


def test_buckets_count_bytes_and_frames_and_give_goodput() -> None:
    clock = Clock()
    link = monitor(clock)
    for t in (1, 2):
        link.data("e", 1_000, clock.at(t).now)
    link.data("e", 1_000, clock.at(15).now)
    clock.at(17)
    series = link.series("e")
    assert [s.start_us - T0 for s in series] == [0, 10 * S]
    assert [(s.bytes, s.frames) for s in series] == [(2_000, 2), (1_000, 1)]
    assert series[0].bytes_per_s == pytest.approx(200.0)  # a whole 10 s bucket
    assert series[1].bytes_per_s == pytest.approx(1_000 / 7)  # 7 s of the bucket so far
    # Later, with nothing received in between: evenly spaced, the empty buckets included.
    clock.at(45)
    series = link.series("e")
    assert [(s.start_us - T0) // S for s in series] == [0, 10, 20, 30, 40]
    assert [s.bytes for s in series] == [2_000, 1_000, 0, 0, 0]
    assert series[1].bytes_per_s == pytest.approx(100.0)  # closed: over its whole 10 s
    assert series[2].latency_p95_ms is None
    assert [s.start_us for s in link.series("e", since_us=T0 + 25 * S)] == [
        T0 + 20 * S,
        T0 + 30 * S,
        T0 + 40 * S,
    ]


def test_overview_rate_is_over_the_last_minute() -> None:
    clock = Clock()
    link = monitor(clock)
    link.data("e", 3_000, clock.at(0).now)
    [row] = link.overview()
    assert row.bytes_per_s == pytest.approx(3_000.0)  # seen for under a second: over 1 s
    clock.at(30)
    assert link.overview()[0].bytes_per_s == pytest.approx(100.0)  # seen 30 s ago: over 30 s
    link.data("e", 5_000, clock.at(100).now)  # bucket 10: out of the window below
    link.data("e", 6_000, clock.at(185).now)  # bucket 18: in it
    clock.at(200)  # the window: buckets 15..20, from 150 s on
    [row] = link.overview()
    assert row.bytes_per_s == pytest.approx(6_000 / 50)
    assert row.last_message_us == T0 + 185 * S


def test_latency_percentiles_exact_then_sampled() -> None:
    clock = Clock().at(5)
    exact = monitor(clock, latency_samples=1_000)
    sampled = monitor(clock, latency_samples=64)
    for ms in range(1, 101):  # latencies 1..100 ms, in shuffled order
        capture = clock.now - ((ms * 37) % 100 + 1) * 1_000
        exact.data("e", 10, capture)
        sampled.data("e", 10, capture)
    [bucket] = exact.series("e")
    assert (bucket.latency_p50_ms, bucket.latency_p95_ms) == (50.0, 95.0)
    assert exact.overview()[0].latency_p95_ms == 95.0
    [bucket] = sampled.series("e")
    assert bucket.latency_p95_ms is not None
    assert 85.0 <= bucket.latency_p95_ms <= 100.0  # 64 of the 100, a uniform sample
    # A capture time ahead of the cloud's clock (skew) counts as 0 ms, not negative.
    future = monitor(clock)
    future.data("e", 10, clock.now + 5 * S)
    assert future.series("e")[0].latency_p50_ms == 0.0


def test_window_p95_weighs_each_bucket_by_its_frames() -> None:
    clock = Clock()
    link = monitor(clock, latency_samples=4)
    clock.at(1)
    for _ in range(100):  # 100 frames at 10 ms: only 4 kept, each standing for 25
        link.data("e", 1, clock.now - 10_000)
    clock.at(11)
    for _ in range(4):  # 4 frames at 500 ms
        link.data("e", 1, clock.now - 500_000)
    # 4 % of the frames were slow: the p95 is the fast one; unweighted, half the samples are.
    assert link.overview()[0].latency_p95_ms == pytest.approx(10.0)
    fast, slow = array("f", [10.0] * 4), array("f", [500.0] * 4)
    assert weighted_quantiles([(fast, 25.0), (slow, 1.0)], (0.95, 0.97)) == [10.0, 500.0]
    assert weighted_quantiles([(slow, 1.0), (fast, 1.0)], (0.5,)) == [10.0]
    assert weighted_quantiles([(array("f"), 1.0)], (0.5, 0.95)) == [None, None]


def test_buckets_are_bounded() -> None:
    clock = Clock()
    link = monitor(clock, buckets=5)
    for b in range(12):
        link.data("e", b + 1, clock.at(b * 10 + 1).now)
    series = link.series("e")
    assert [(s.start_us - T0) // (10 * S) for s in series] == [7, 8, 9, 10, 11]
    assert [s.bytes for s in series] == [8, 9, 10, 11, 12]
    clock.at(1_000)  # a long silence: the last 5 buckets, all empty
    series = link.series("e")
    assert [(s.start_us - T0) // (10 * S) for s in series] == [96, 97, 98, 99, 100]
    assert [s.frames for s in series] == [0] * 5


def test_edges_are_bounded_least_recently_seen_first() -> None:
    clock = Clock()
    link = monitor(clock, max_edges=3)
    for i, edge in enumerate(["a", "b", "c"]):
        link.data(edge, 1, clock.at(i).now)
    clock.at(3)
    link.heartbeat("a", beat())  # "a" seen again: "b" is now the least recent
    link.data("d", 1, clock.at(4).now)
    assert [e.edge_id for e in link.overview()] == ["a", "c", "d"]
    assert link.series("b") == []
    assert len(link) == 3


def test_buckets_keep_the_rung_and_backlog() -> None:
    clock = Clock()
    link = monitor(clock)
    link.heartbeat("e", beat(backlog=7, rung="f16"))
    link.data("e", 10, clock.at(12).now)  # bucket 1: no heartbeat in it
    link.heartbeat("e", beat(backlog=3, rung="int8", spool=4_096, reconnects=2))
    link.heartbeat("e", beat(backlog=9, rung="int8", spool=8_192, reconnects=2))
    clock.at(25)
    series = link.series("e")
    assert [(s.rung, s.backlog) for s in series] == [("f16", 7), ("int8", 9), ("", None)]
    [row] = link.overview()
    assert (row.rung, row.backlog, row.spool_bytes, row.reconnects) == ("int8", 9, 8_192, 2)
    assert row.rate_bps == pytest.approx(1e6)
    assert row.last_heartbeat_us == T0 + 12 * S


def test_codec_steps_follow_the_reported_rung_else_the_embeddings() -> None:
    clock = Clock()
    link = monitor(clock)
    link.heartbeat("e", beat(rung="f16"))
    link.data("e", 10, clock.now, codec_id="int8")  # a dithered or backlogged embedding
    assert link.codec_steps("e") == []
    link.heartbeat("e", beat(rung="int8"))  # the edge moved
    link.heartbeat("e", beat(rung="pq32x8"))
    link.heartbeat("e", beat(rung="int8"))
    at = clock.at(3).now
    link.heartbeat("e", beat(rung="f16"))
    assert [(s.from_rung, s.to_rung) for s in link.codec_steps("e")] == [
        ("f16", "int8"),
        ("int8", "pq32x8"),
        ("pq32x8", "int8"),
        ("int8", "f16"),
    ]
    assert link.codec_steps("e")[-1] == CodecStep(at, "int8", "f16")
    # An edge that reports no rung (no ladder): its embeddings' codec is its rung.
    link.data("n", 10, clock.now, codec_id="f16")
    link.heartbeat("n", beat(rung=""))
    link.data("n", 10, clock.at(4).now, codec_id="int8")
    assert link.codec_steps("n") == [CodecStep(T0 + 4 * S, "f16", "int8")]
    assert link.edge("n") is not None
    assert link.codec_steps("nobody") == []


def test_steps_are_bounded() -> None:
    link = monitor(Clock(), max_steps=3)
    for i in range(10):
        link.heartbeat("e", beat(rung=f"r{i}"))
    assert [s.to_rung for s in link.codec_steps("e")] == ["r7", "r8", "r9"]


def test_overview_connected_state_across_a_reconnect() -> None:
    clock = Clock()
    link = monitor(clock)
    link.session_opened("e", "s1", "webrtc")
    [row] = link.overview()
    assert (row.connected, row.transport, row.connected_since_us) == (True, "webrtc", T0)
    assert (row.sessions, row.backlog, row.reconnects, row.last_message_us) == (1, None, None, None)
    # The edge reconnects over the WebSocket: the new session opens before the old one closes.
    clock.at(5)
    link.session_opened("e", "s2", "websocket")
    link.session_closed("e", "s1")
    [row] = link.overview()
    assert (row.connected, row.transport, row.connected_since_us) == (True, "websocket", T0 + 5 * S)
    assert row.sessions == 2
    link.session_closed("e", "s2")
    [row] = link.overview()
    assert (row.connected, row.transport, row.connected_since_us) == (False, "websocket", None)
    link.session_closed("unknown", "s9")  # nothing to close: not tracked either
    assert [e.edge_id for e in link.overview()] == ["e"]


def test_concurrent_writers_lose_nothing() -> None:
    clock = Clock().at(1)
    link = monitor(clock)

    def write(edge: str) -> None:
        for _ in range(2_000):
            link.data(edge, 3, clock.now - 1_000)

    threads = [threading.Thread(target=write, args=(f"e{i % 2}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [link.series(e)[0].frames for e in ("e0", "e1")] == [8_000, 8_000]
    assert [link.series(e)[0].bytes for e in ("e0", "e1")] == [24_000, 24_000]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="bucket_s"):
        LinkMonitor(bucket_s=0)
