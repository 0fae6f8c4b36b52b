"""Three network namespaces in a line, edge - router - cloud, with the uplink shaped by ``tc tbf``.

Why three: the edge's egress veth carries the token bucket (the uplink rate, as a cell would), and
the router in the middle is where a user-space relay (:mod:`sim.relay`) can add delay, jitter and
loss; the kernel here has no ``netem``. Packets crossing the router are steered into a persistent
TUN device by policy rules (``iif`` of either veth -> table 100 -> ``tun``); what the relay writes
back enters with ``iif tun`` and is forwarded by the main table. Without impairments the router
just forwards.

Everything lives inside namespaces named ``semcom-emu-<suffix>-{edge,rtr,cloud}``; the veth pairs
are created directly inside them, so deleting the namespaces removes every link, address and
qdisc. Addresses come from a /29 in ``10.201.0.0/16`` that no namespace on the machine uses yet:
``.1`` edge, ``.2`` router (edge side), ``.5`` router (cloud side), ``.6`` cloud.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import random
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Final

logger = logging.getLogger(__name__)

PREFIX: Final = "semcom-emu-"
POOL: Final = ipaddress.IPv4Network("10.201.0.0/16")
RELAY_TABLE: Final = 100
LOCK_DIR: Final = "/run/semcom-emu"
#: tbf's bucket must hold at least one full packet (bytes).
MIN_BURST_BYTES: Final = 3_000


class EmulationError(Exception):
    """Base of every emulation failure (namespaces, shaping, processes)."""


class NotPrivilegedError(EmulationError):
    """Emulation needs root and working ``ip netns``; says which is missing."""


class NetnsCommandError(EmulationError):
    """An ``ip``/``tc`` command failed."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"`{' '.join(args)}` exited with {returncode}: {stderr.strip()}")


def run(args: list[str], *, check: bool = True) -> str:
    """Run a command; stdout, or :class:`NetnsCommandError` (with its stderr) on failure."""
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetnsCommandError(args, proc.returncode, proc.stderr)
    return proc.stdout


def check_privileges() -> None:
    """Raise :class:`NotPrivilegedError` unless we are root and ``ip netns`` and ``tc`` work."""
    if os.geteuid() != 0:
        raise NotPrivilegedError(
            f"emulation needs root (network namespaces, veth, tc): running as uid {os.geteuid()}"
        )
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise NotPrivilegedError(f"emulation needs `{tool}` (iproute2) on PATH")
    probe = f"{PREFIX}probe-{secrets.token_hex(3)}"
    try:
        run(["ip", "netns", "add", probe])
    except NetnsCommandError as exc:
        raise NotPrivilegedError(
            f"`ip netns add` does not work here: {exc.stderr.strip()}"
        ) from None
    run(["ip", "netns", "del", probe], check=False)


def namespaces() -> list[str]:
    """Names of every network namespace ``ip netns`` knows."""
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


def _lock(suffix: str, *, block: bool) -> int | None:
    """An exclusive flock on ``LOCK_DIR/<suffix>.lock``: a run holds it while its namespaces
    live (the kernel drops it when the process dies). ``None`` when another process holds it."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    fd = os.open(os.path.join(LOCK_DIR, f"{suffix}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _unlock(suffix: str, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(LOCK_DIR, f"{suffix}.lock"))
    os.close(fd)


def cleanup_leftovers(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces whose name starts with ``prefix`` and whose run is gone (its lock is
    free: the run was killed); their names. Namespaces of a run in progress are kept."""
    removed = []
    for ns in namespaces():
        if not ns.startswith(prefix):
            continue
        suffix = ns[len(prefix) :].rpartition("-")[0]
        fd = _lock(suffix, block=False) if suffix else None
        if fd is None:
            continue  # a live run holds it
        _unlock(suffix, fd)
        run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    outputs = [run(["ip", "-o", "-4", "addr", "show"], check=False)]
    outputs += [
        run(["ip", "-n", ns, "-o", "-4", "addr", "show"], check=False) for ns in namespaces()
    ]
    used = []
    for text in outputs:
        for line in text.splitlines():
            fields = line.split()
            if "inet" in fields:
                iface = ipaddress.IPv4Interface(fields[fields.index("inet") + 1])
                used.append(iface.network)
    return used


def free_block(rng: random.Random | None = None) -> ipaddress.IPv4Network:
    """A /29 of :data:`POOL` that overlaps no IPv4 network configured anywhere on the machine."""
    used = [n for n in _used_networks() if n.overlaps(POOL)]
    blocks = list(POOL.subnets(new_prefix=29))
    (rng or random.Random()).shuffle(blocks)
    for block in blocks:
        if not any(block.overlaps(n) for n in used):
            return block
    raise EmulationError(f"no free /29 left in {POOL}")


@dataclass(frozen=True)
class Topology:
    """Names and addresses of one edge - router - cloud line (see the module docstring)."""

    suffix: str
    block: ipaddress.IPv4Network
    lock_fd: int = field(default=-1, compare=False, repr=False)

    @property
    def edge_ns(self) -> str:
        return f"{PREFIX}{self.suffix}-edge"

    @property
    def router_ns(self) -> str:
        return f"{PREFIX}{self.suffix}-rtr"

    @property
    def cloud_ns(self) -> str:
        return f"{PREFIX}{self.suffix}-cloud"

    @property
    def all_ns(self) -> tuple[str, str, str]:
        return (self.edge_ns, self.router_ns, self.cloud_ns)

    def _addr(self, index: int) -> str:
        return str(self.block.network_address + index)

    @property
    def edge_addr(self) -> str:
        return self._addr(1)

    @property
    def router_edge_addr(self) -> str:
        return self._addr(2)

    @property
    def router_cloud_addr(self) -> str:
        return self._addr(5)

    @property
    def cloud_addr(self) -> str:
        return self._addr(6)

    @property
    def edge_net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self._addr(0)}/30")

    # Interface names (IFNAMSIZ: 15 characters at most).
    @property
    def edge_if(self) -> str:
        return f"se{self.suffix}e"

    @property
    def router_edge_if(self) -> str:
        return f"se{self.suffix}r"

    @property
    def router_cloud_if(self) -> str:
        return f"se{self.suffix}s"

    @property
    def cloud_if(self) -> str:
        return f"se{self.suffix}c"

    @property
    def tun_if(self) -> str:
        return f"se{self.suffix}t"

    def exec_args(self, ns: str) -> list[str]:
        """Prefix that runs a command inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns]


def _sysctl(ns: str, key: str, value: str) -> None:
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"])


def create(*, relay: bool, suffix: str | None = None) -> Topology:
    """Build the namespaces, veths, addresses and routes (and the relay's TUN and policy rules
    when ``relay``). On any failure what was built is removed before the error propagates."""
    suffix = suffix or secrets.token_hex(3)
    fd = _lock(suffix, block=True)
    assert fd is not None
    try:
        topo = Topology(suffix, free_block(), fd)
    except BaseException:
        _unlock(suffix, fd)
        raise
    try:
        for ns in topo.all_ns:
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        pairs = (
            (topo.edge_if, topo.edge_ns, topo.router_edge_if, topo.router_ns),
            (topo.router_cloud_if, topo.router_ns, topo.cloud_if, topo.cloud_ns),
        )
        for a, a_ns, b, b_ns in pairs:
            veth = ["ip", "link", "add", a, "netns", a_ns, "type", "veth"]
            run([*veth, "peer", "name", b, "netns", b_ns])
        for ns, dev, addr in (
            (topo.edge_ns, topo.edge_if, topo.edge_addr),
            (topo.router_ns, topo.router_edge_if, topo.router_edge_addr),
            (topo.router_ns, topo.router_cloud_if, topo.router_cloud_addr),
            (topo.cloud_ns, topo.cloud_if, topo.cloud_addr),
        ):
            run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", topo.edge_ns, "route", "add", "default", "via", topo.router_edge_addr])
        run(["ip", "-n", topo.cloud_ns, "route", "add", "default", "via", topo.router_cloud_addr])
        _sysctl(topo.router_ns, "net.ipv4.ip_forward", "1")
        if relay:
            _add_relay_path(topo)
    except BaseException:
        destroy(topo)
        raise
    logger.info("namespaces %s up on %s", ", ".join(topo.all_ns), topo.block)
    return topo


def _add_relay_path(topo: Topology) -> None:
    ns = topo.router_ns
    run(["ip", "-n", ns, "tuntap", "add", "dev", topo.tun_if, "mode", "tun"])
    run(["ip", "-n", ns, "link", "set", topo.tun_if, "up"])
    # Packets written back by the relay arrive on the TUN with foreign source addresses.
    for scope in ("all", "default", topo.tun_if):
        _sysctl(ns, f"net.ipv4.conf.{scope}.rp_filter", "0")
    _sysctl(ns, f"net.ipv4.conf.{topo.tun_if}.accept_local", "1")
    table = str(RELAY_TABLE)
    run(["ip", "-n", ns, "route", "add", "default", "dev", topo.tun_if, "table", table])
    for dev in (topo.router_edge_if, topo.router_cloud_if):
        run(["ip", "-n", ns, "rule", "add", "iif", dev, "lookup", table, "pref", "100"])


def shape(topo: Topology, rate_bps: float, *, queue_ms: float = 500.0) -> None:
    """Token bucket on the edge's egress at ``rate_bps`` (bit/s, counted on whole IP packets),
    with a bucket of 10 ms of rate (>= 3000 bytes) and a queue of ``queue_ms`` of rate (what a
    cell's buffer would hold; packets beyond it are dropped)."""
    rate_bytes = rate_bps / 8
    burst = max(MIN_BURST_BYTES, int(rate_bytes * 0.010))
    limit = max(3 * MIN_BURST_BYTES, int(rate_bytes * queue_ms / 1000))
    run(
        [
            "ip", "netns", "exec", topo.edge_ns, "tc", "qdisc", "replace", "dev", topo.edge_if,
            "root", "tbf", "rate", f"{int(rate_bps)}bit", "burst", str(burst),
            "limit", str(limit),
        ]
    )  # fmt: skip


def shaped_stats(topo: Topology) -> dict[str, int]:
    """The edge qdisc's counters: ``sent_bytes``, ``sent_packets``, ``dropped``, ``overlimits``."""
    text = run(
        ["ip", "netns", "exec", topo.edge_ns, "tc", "-s", "qdisc", "show", "dev", topo.edge_if]
    )
    words = text.replace("(", " ").replace(")", " ").replace(",", " ").split()
    out: dict[str, int] = {}
    for key, name, offset in (
        ("Sent", "sent_bytes", 1),
        ("bytes", "sent_packets", 1),
        ("dropped", "dropped", 1),
        ("overlimits", "overlimits", 1),
    ):
        if key in words:
            with contextlib.suppress(ValueError, IndexError):
                out[name] = int(words[words.index(key) + offset])
    return out


def destroy(topo: Topology) -> None:
    """Delete the topology's namespaces (and with them every veth, TUN, rule and qdisc)."""
    present = set(namespaces())
    for ns in topo.all_ns:
        if ns in present:
            run(["ip", "netns", "del", ns], check=False)
    if topo.lock_fd >= 0:  # idempotent: a second destroy finds nothing to do
        _unlock(topo.suffix, topo.lock_fd)
        object.__setattr__(topo, "lock_fd", -1)
