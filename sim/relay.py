"""User-space delay, jitter and loss on a TUN device (the kernel here has no ``netem``).

Runs inside the router namespace of :mod:`sim.netns`: every packet crossing the router is routed
into the TUN; the relay holds it for the one-way delay (plus jitter), drops it with the loss
probability, and writes it back, after which the kernel forwards it on. Per direction, packets
leave in the order they came (a packet never overtakes an earlier one, as on a real link where
jitter is queueing delay), so jitter delays but does not reorder.

Run it as ``python -m sim.relay --tun NAME --edge-net 10.201.0.0/30 --delay-ms 30 ...``; it
prints ``ready`` on stdout once attached, then a JSON line of counters at exit (SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import ipaddress
import json
import logging
import os
import random
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Final

logger = logging.getLogger(__name__)

TUNSETIFF: Final = 0x400454CA
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
MAX_PACKET: Final = 65_535


@dataclass(frozen=True)
class Impairment:
    """One direction's impairment: fixed delay (ms), uniform jitter of +- ``jitter_ms`` (ms,
    clipped at zero total delay), and independent loss probability (0..1)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"delay and jitter must be >= 0 ms, got {self}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")


@dataclass
class Direction:
    """Schedules one direction's packets: :meth:`admit` says when (monotonic s) a packet that
    arrives ``now`` leaves, or ``None`` when it is lost. Seeded: the same arrivals give the same
    decisions."""

    impairment: Impairment
    rng: random.Random
    last_release: float = 0.0
    passed: int = 0
    dropped: int = 0
    bytes: int = 0

    def admit(self, now: float, size: int) -> float | None:
        imp = self.impairment
        if imp.loss and self.rng.random() < imp.loss:
            self.dropped += 1
            return None
        delay_ms = imp.delay_ms
        if imp.jitter_ms:
            delay_ms = max(0.0, delay_ms + self.rng.uniform(-imp.jitter_ms, imp.jitter_ms))
        release = max(self.last_release, now + delay_ms / 1000)
        self.last_release = release
        self.passed += 1
        self.bytes += size
        return release


@dataclass
class Relay:
    """Both directions; a packet is *up* when its IPv4 source lies in ``edge_net``."""

    edge_net: ipaddress.IPv4Network
    up: Direction
    down: Direction
    other: int = field(default=0)

    def direction(self, packet: bytes) -> Direction | None:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            self.other += 1
            return None  # not IPv4: passed through untouched
        source = ipaddress.IPv4Address(packet[12:16])
        return self.up if source in self.edge_net else self.down

    def counters(self) -> dict[str, int]:
        return {
            "up_passed": self.up.passed,
            "up_dropped": self.up.dropped,
            "up_bytes": self.up.bytes,
            "down_passed": self.down.passed,
            "down_dropped": self.down.dropped,
            "down_bytes": self.down.bytes,
            "other": self.other,
        }


def open_tun(name: str) -> int:
    """Attach to the (persistent) TUN device ``name``; a non-blocking fd of raw IP packets."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


async def serve(fd: int, relay: Relay, stop: asyncio.Event) -> None:
    """Relay packets on ``fd`` until ``stop`` is set."""
    loop = asyncio.get_running_loop()

    def write(packet: bytes) -> None:
        try:
            os.write(fd, packet)
        except OSError as exc:  # e.g. ENOBUFS: the packet is lost, as on a full link
            logger.debug("write to tun failed: %s", exc)

    def readable() -> None:
        while True:
            try:
                packet = os.read(fd, MAX_PACKET)
            except BlockingIOError:
                return
            now = time.monotonic()
            direction = relay.direction(packet)
            if direction is None:
                write(packet)
                continue
            release = direction.admit(now, len(packet))
            if release is None:
                continue
            if release <= now:
                write(packet)
            else:
                loop.call_at(loop.time() + (release - now), write, packet)

    loop.add_reader(fd, readable)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.relay", description=__doc__)
    parser.add_argument("--tun", required=True, help="persistent TUN device to attach to")
    parser.add_argument("--edge-net", required=True, help="IPv4 network of the edge side")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay, each way (ms)")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="+- uniform jitter (ms)")
    parser.add_argument("--loss-up", type=float, default=0.0, help="edge->cloud loss (0..1)")
    parser.add_argument("--loss-down", type=float, default=0.0, help="cloud->edge loss (0..1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    relay = Relay(
        ipaddress.IPv4Network(args.edge_net),
        Direction(
            Impairment(args.delay_ms, args.jitter_ms, args.loss_up), random.Random(rng.random())
        ),
        Direction(
            Impairment(args.delay_ms, args.jitter_ms, args.loss_down), random.Random(rng.random())
        ),
    )
    fd = open_tun(args.tun)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("ready", flush=True)
        await serve(fd, relay, stop)

    try:
        asyncio.run(run())
    finally:
        os.close(fd)
        print(json.dumps(relay.counters()), flush=True)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
