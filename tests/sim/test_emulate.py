"""Emulation over network namespaces: topology lifecycle, tbf rate, relay delay/loss, and (slow)
a real cloud + edge run. The namespace tests need root and skip with the reason otherwise."""

from __future__ import annotations

import ipaddress
import json
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim import netns
from sim.emulate import EdgeOptions, EmulationProfile, emulate, summarise
from sim.netns import NetnsCommandError, NotPrivilegedError, Topology
from sim.relay import Direction, Impairment, Relay

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
VIDEO = DATA / "videos" / "cars_kraten.mp4"
DETECTOR = DATA / "weights" / "yolo11n_int8_coco_320.onnx"


@pytest.fixture(scope="module")
def privileged() -> None:
    try:
        netns.check_privileges()
    except NotPrivilegedError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def topo(privileged: None, request: pytest.FixtureRequest) -> Iterator[Topology]:
    relay = bool(getattr(request, "param", False))
    t = netns.create(relay=relay)
    yield t
    netns.destroy(t)


def in_ns(topo: Topology, ns: str, code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*topo.exec_args(ns), sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def leftovers(suffix: str) -> list[str]:
    links = netns.run(["ip", "-o", "link", "show"])
    return [ns for ns in netns.namespaces() if suffix in ns] + [
        line for line in links.splitlines() if f"se{suffix}" in line
    ]


# ------------------------------------------------------------------ pure parts (no root)


def test_direction_delays_in_order_and_drops_its_share() -> None:
    d = Direction(Impairment(delay_ms=30, jitter_ms=20, loss=0.25), random.Random(1))
    releases = [d.admit(i * 0.001, 100) for i in range(4000)]
    kept = [r for r in releases if r is not None]
    assert kept == sorted(kept)  # jitter never reorders
    assert 0.22 < d.dropped / 4000 < 0.28
    plain = Direction(Impairment(delay_ms=30), random.Random(1))
    assert plain.admit(10.0, 100) == pytest.approx(10.030)


def test_relay_tells_directions_by_source() -> None:
    relay = Relay(
        ipaddress.IPv4Network("10.201.0.0/30"),
        Direction(Impairment(), random.Random(0)),
        Direction(Impairment(), random.Random(0)),
    )
    header = bytes([0x45]) + bytes(11)
    up = header + bytes([10, 201, 0, 1]) + bytes([10, 201, 0, 6])
    down = header + bytes([10, 201, 0, 6]) + bytes([10, 201, 0, 1])
    assert relay.direction(up) is relay.up
    assert relay.direction(down) is relay.down
    assert relay.direction(bytes([0x60]) + bytes(39)) is None  # IPv6 passes untouched


def test_impairment_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="loss"):
        Impairment(loss=1.0)
    with pytest.raises(ValueError, match="delay"):
        Impairment(delay_ms=-1)


def test_summarise_window() -> None:
    t0 = 1_000_000_000
    # (capture, commit, bytes): one before the window, three in it, one committed after it.
    rows = [
        (t0 - 500_000, t0 - 100_000, 999, 6),
        (t0, t0 + 100_000, 100, 6),
        (t0 + 1_000_000, t0 + 1_200_000, 100, 4),
        (t0 + 2_000_000, t0 + 2_300_000, 100, 6),
        (t0 + 3_900_000, t0 + 4_400_000, 50, 4),
    ]
    s = summarise(rows, t0, 4.0)
    assert s["committed_messages"] == 3
    assert s["goodput_bps"] == pytest.approx(300 * 8 / 4)
    assert s["offered_bps"] == pytest.approx(350 * 8 / 4)
    assert s["latency_ms"]["max"] == pytest.approx(500)
    assert s["latency_ms"]["p50"] == pytest.approx(200)
    assert s["latency_by_type_ms"]["embedding"]["max"] == pytest.approx(500)
    assert s["latency_by_type_ms"]["frame_counts"]["count"] == 2


# ------------------------------------------------------------------ namespaces (root)


@pytest.mark.netns
@pytest.mark.parametrize("topo", [True], indirect=True)
def test_topology_is_built_and_removed_without_leftovers(topo: Topology) -> None:
    netns.shape(topo, 1_000_000)
    assert set(topo.all_ns) <= set(netns.namespaces())
    addrs = netns.run(["ip", "-n", topo.edge_ns, "-o", "-4", "addr", "show", topo.edge_if])
    assert f"{topo.edge_addr}/30" in addrs
    qdisc = netns.run(
        ["ip", "netns", "exec", topo.edge_ns, "tc", "qdisc", "show", "dev", topo.edge_if]
    )
    assert "tbf" in qdisc
    assert "1Mbit" in qdisc
    assert topo.block.subnet_of(netns.POOL)
    # A live run's namespaces survive a leftover cleanup (its lock is held) ...
    assert not set(topo.all_ns) & set(netns.cleanup_leftovers())
    netns.destroy(topo)
    assert leftovers(topo.suffix) == []


@pytest.mark.netns
def test_cleanup_removes_namespaces_of_a_killed_run(privileged: None) -> None:
    script = "from sim import netns; import os; t = netns.create(relay=True); print(t.suffix)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    suffix = out.stdout.strip()  # the process exited without destroy(): its lock died with it
    assert len(leftovers(suffix)) >= 3
    removed = netns.cleanup_leftovers()
    assert {f"{netns.PREFIX}{suffix}-{n}" for n in ("edge", "rtr", "cloud")} <= set(removed)
    assert leftovers(suffix) == []


@pytest.mark.netns
def test_failed_setup_removes_what_it_built(privileged: None) -> None:
    suffix = "t" + secrets.token_hex(2)
    clash = f"{netns.PREFIX}{suffix}-rtr"
    netns.run(["ip", "netns", "add", clash])  # the router's name is taken: setup fails midway
    try:
        with pytest.raises(NetnsCommandError, match="netns add"):
            netns.create(relay=False, suffix=suffix)
        assert leftovers(suffix) == []
    finally:
        netns.run(["ip", "netns", "del", clash], check=False)


_RECEIVER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 9100)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0; first = last = None
while (d := c.recv(65536)):
    now = time.monotonic(); first = first or now; last = now; n += len(d)
print(n, last - first, flush=True)
"""
_SENDER = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], 9100)); end = time.monotonic() + float(sys.argv[2])
chunk = bytes(16384)
while time.monotonic() < end:
    c.sendall(chunk)
c.close()
"""


@pytest.mark.netns
def test_shaped_tcp_throughput_is_near_the_tbf_rate(topo: Topology) -> None:
    rate = 4_000_000
    netns.shape(topo, rate)
    receiver = in_ns(topo, topo.cloud_ns, _RECEIVER, topo.cloud_addr)
    assert receiver.stdout is not None
    assert receiver.stdout.readline().strip() == "ready"
    sender = in_ns(topo, topo.edge_ns, _SENDER, topo.cloud_addr, "1.5")
    sender.communicate(timeout=30)
    out, err = receiver.communicate(timeout=30)
    received, seconds = out.split()
    measured = int(received) * 8 / float(seconds)
    # tbf counts whole IP packets; TCP payload is ~96 % of them.
    print(f"measured {measured:.0f} bit/s through a {rate} bit/s tbf")
    assert 0.8 * rate < measured < 1.05 * rate, (measured, err)
    assert netns.shaped_stats(topo)["sent_bytes"] >= int(received)


_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 9200))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(2048); s.sendto(d, a)
"""
_PING = """
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
rtts = []
for i in range(int(sys.argv[2])):
    t = time.monotonic(); s.sendto(i.to_bytes(4, "big"), (sys.argv[1], 9200))
    try:
        s.recvfrom(64); rtts.append((time.monotonic() - t) * 1000)
    except TimeoutError:
        pass
print(json.dumps(rtts))
"""
_BURST = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.4)
for i in range(400):
    s.sendto(bytes(32), (sys.argv[1], 9200))
n = 0
try:
    while True:
        s.recvfrom(64); n += 1
except TimeoutError:
    pass
print(n)
"""


def _relay(topo: Topology, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*topo.exec_args(topo.router_ns), sys.executable, "-m", "sim.relay", "--tun", topo.tun_if,
         "--edge-net", str(topo.edge_net), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return out


@pytest.mark.netns
@pytest.mark.parametrize("topo", [True], indirect=True)
def test_relay_adds_the_configured_delay_and_loss(topo: Topology) -> None:
    echo = in_ns(topo, topo.cloud_ns, _ECHO, topo.cloud_addr)
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == "ready"
    try:
        relay = _relay(topo, "--delay-ms", "25")
        ping = in_ns(topo, topo.edge_ns, _PING, topo.cloud_addr, "15")
        rtts = sorted(json.loads(ping.communicate(timeout=30)[0]))
        counters = json.loads(_stop(relay).splitlines()[-1])
        assert len(rtts) == 15
        assert 49 < rtts[len(rtts) // 2] < 58, rtts  # 2 x 25 ms plus a little processing
        assert counters["up_passed"] == counters["down_passed"] == 15

        relay = _relay(topo, "--loss-up", "0.5", "--seed", "3")
        burst = in_ns(topo, topo.edge_ns, _BURST, topo.cloud_addr)
        back = int(burst.communicate(timeout=30)[0])
        counters = json.loads(_stop(relay).splitlines()[-1])
        assert counters["up_dropped"] + counters["up_passed"] == 400
        assert back == counters["up_passed"]
        assert 140 < back < 260
    finally:
        echo.kill()
        echo.communicate(timeout=10)


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.realdata
def test_emulation_of_real_cloud_and_edge(privileged: None, tmp_path: Path) -> None:
    if not (VIDEO.exists() and DETECTOR.exists()):
        pytest.skip(f"needs {VIDEO} and {DETECTOR}")
    profile = EmulationProfile(rate_bps=512_000, rtt_ms=40)
    options = EdgeOptions(
        VIDEO, DETECTOR, encoder="vit_tiny_patch16_224", random_init_encoder=True,
        drain_timeout_s=10,
    )  # fmt: skip
    before = set(netns.namespaces())
    started = time.monotonic()
    result = emulate(profile, options, 10.0, workdir=tmp_path)
    assert time.monotonic() - started < 600
    assert result.committed_messages > 0
    assert 0 < result.goodput_bps < profile.rate_bps
    assert result.latency_ms["p50"] > profile.rtt_ms / 2
    assert result.wire["sent_bytes"] > result.committed_bytes
    assert result.relay["up_passed"] > 0
    assert set(netns.namespaces()) <= before
