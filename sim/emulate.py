"""Emulation: the real ``semcom cloud serve`` and ``semcom edge run`` over a shaped link.

The two processes run in the edge and cloud namespaces of :mod:`sim.netns`; the edge's egress is
a token bucket at the profile's uplink rate; a relay (:mod:`sim.relay`) in the router adds half
the RTT each way, jitter and loss when the profile has any. The edge reaches the cloud only
through that path (signaling over HTTP and the WebRTC data channel, both ICE ends pinned to their
namespace address).

What is measured, after the run, from the cloud's journal (``journal_frames`` in its SQLite DB):

* **goodput**: bytes of messages the cloud committed (and so acknowledged) with a commit time in
  the window, per second (bit/s); the window starts when the cloud commits its first message
  (the uplink is up: what the edge captured while loading models and connecting is left out)
  and lasts ``duration_s``, then the edge is stopped (it drains what it can).
* **latency**: capture -> commit, ``received_us - capture_ts_us`` of every message captured in
  the window (the cloud's commit-transaction clock minus the edge's frame-capture clock; both
  processes run on this host, so one clock). It includes the edge's own detection/embedding
  delay, the spool, the link and the cloud's group commit.
* **wire**: bytes the token bucket sent (every header included), its drops and its utilisation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

from edge.encoder_options import model_kwargs_args
from sim import netns
from sim.netns import EmulationError, Topology

logger = logging.getLogger(__name__)

EDGE_ID: Final = "emu-edge"
CLOUD_PORT: Final = 8443
START_TIMEOUT_S: Final = 600.0  # model loading/export on a busy 2-core box takes minutes
_SUMMARY = re.compile(
    r"(?P<frames>\d+) frames in (?P<elapsed>[\d.]+) s \((?P<fps>[\d.]+) fps\), "
    r"(?P<dropped>\d+) frames dropped, (?P<skipped>\d+) embeddings skipped, "
    r"(?P<messages>\d+) messages, (?P<bytes>\d+) bytes"
)


class ProcessError(EmulationError):
    """The cloud, edge or relay process failed; carries the tail of its log."""


class LinkProfile(Protocol):
    """What emulation needs of a link profile (``sim.profiles`` profiles fit it)."""

    @property
    def rate_bps(self) -> float: ...  # uplink rate, bit/s
    @property
    def rtt_ms(self) -> float: ...  # round-trip time added by the link, ms
    @property
    def jitter_ms(self) -> float: ...  # +- uniform per-packet delay variation, ms
    @property
    def loss(self) -> float: ...  # packet loss probability per direction, 0..1


@dataclass(frozen=True)
class EmulationProfile:
    """A plain :class:`LinkProfile`."""

    rate_bps: float
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    name: str = "custom"


@dataclass(frozen=True)
class EdgeOptions:
    """How ``semcom edge run`` is started (the flags of the same names)."""

    source: Path
    detector: Path
    imgsz: int = 320
    encoder: str | None = None  # default: the edge's (vit_base_patch16_224)
    encoder_weights: Path | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)  # timm.create_model's
    encoder_preprocess: Mapping[str, Any] = field(default_factory=dict)  # size, mean, std, ...
    random_init_encoder: bool = False
    encoder_runtime: str | None = None
    codec: str | None = None
    ladder: str | None = None
    max_rate: str | None = None  # the edge's own uplink budget (it is not told the link rate)
    loop: bool = True
    drain_timeout_s: float = 30.0
    extra_args: tuple[str, ...] = ()


@dataclass
class EmulationResult:
    profile: dict[str, Any]
    window_s: float
    goodput_bps: float  # message bytes committed in the window, bit/s
    offered_bps: float  # message bytes captured in the window (eventually committed), bit/s
    committed_messages: int
    committed_bytes: int
    latency_ms: dict[str, float]  # p50, p95, p99, max, mean, count of capture -> commit
    latency_by_type_ms: dict[str, dict[str, float]]  # the same per message type
    latency_source: str
    wire: dict[str, float]  # tbf: sent_bytes, wire_bps, utilisation, dropped
    undelivered_messages: int  # left in the edge's spool at exit
    edge_summary: str
    edge: dict[str, float] = field(default_factory=dict)
    relay: dict[str, int] = field(default_factory=dict)
    cloud_metrics: dict[str, float] = field(default_factory=dict)
    random_init_encoder: bool = False
    workdir: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without proxies or semcom settings that could point a child elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if "proxy" not in k.lower() and not k.startswith(("SEMCOM_EDGE__", "SEMCOM_CLOUD__"))
    }
    return env | {"PYTHONUNBUFFERED": "1"} | extra


@dataclass
class _Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise ProcessError(
                f"{self.name} exited with {self.proc.returncode}; log {self.log}:\n{self.tail()}"
            )

    def stop(self, sig_timeout_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(sig_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _spawn(topo: Topology, ns: str, name: str, args: list[str], workdir: Path, env: dict[str, str],
           stdout: int | IO[bytes] | None = None) -> _Proc:  # fmt: skip
    log = workdir / f"{name}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [*topo.exec_args(ns), *args],
            stdout=stdout if stdout is not None else fh,
            stderr=fh,
            cwd=workdir,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
    return _Proc(name, proc, log)


def _wait_for(proc: _Proc, predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        proc.check()
        time.sleep(0.2)
    raise ProcessError(f"{proc.name}: no {what} within {timeout_s:.0f} s; log:\n{proc.tail()}")


Row = tuple[int, int, int, int]  # capture_ts_us, received_us, bytes, message type


def _journal(db: Path) -> list[Row]:
    """(capture_ts_us, received_us, bytes, type) of every committed message of the edge."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute(
                "SELECT capture_ts_us, received_us, length(frame), type FROM journal_frames "
                "WHERE edge_id = ?",
                (EDGE_ID,),
            ).fetchall()
    except sqlite3.OperationalError:
        return []
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in rows]


def _first_commit_us(db: Path) -> int | None:
    rows = _journal(db)
    return min(r[1] for r in rows) if rows else None


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)  # nearest rank
    return sorted_values[index]


def _latency(rows: list[Row]) -> dict[str, float]:
    latencies = sorted((r[1] - r[0]) / 1000 for r in rows)
    latency = {f"p{q}": _percentile(latencies, q) for q in (50, 95, 99)}
    latency["max"] = latencies[-1] if latencies else float("nan")
    latency["mean"] = sum(latencies) / len(latencies) if latencies else float("nan")
    latency["count"] = float(len(latencies))
    return latency


def summarise(rows: list[Row], t0_us: int, window_s: float) -> dict[str, Any]:
    """Goodput, offered rate and capture -> commit latency (all, and per message type) of the
    window ``[t0, t0 + window)``."""
    from shared.messages import MessageType

    t1_us = t0_us + int(window_s * 1e6)
    committed = [r for r in rows if t0_us <= r[1] < t1_us]
    captured = [r for r in rows if t0_us <= r[0] < t1_us]
    by_type: dict[str, dict[str, float]] = {}
    for kind in sorted({r[3] for r in captured}):
        try:
            name = MessageType(kind).name.lower()
        except ValueError:
            name = str(kind)
        by_type[name] = _latency([r for r in captured if r[3] == kind])
    return {
        "latency_by_type_ms": by_type,
        "goodput_bps": sum(r[2] for r in committed) * 8 / window_s,
        "offered_bps": sum(r[2] for r in captured) * 8 / window_s,
        "committed_messages": len(committed),
        "committed_bytes": sum(r[2] for r in committed),
        "latency_ms": _latency(captured),
    }


def _spool_pending(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _scrape_metrics(topo: Topology, url: str, api_token: str) -> dict[str, float]:
    """The cloud's own view (``/metrics``, fetched from inside its namespace)."""
    code = (
        "import sys, httpx; r = httpx.get(sys.argv[1], headers={'Authorization': 'Bearer ' + "
        "sys.argv[2]}, timeout=5, trust_env=False); print(r.text)"
    )
    out = subprocess.run(
        [*topo.exec_args(topo.cloud_ns), sys.executable, "-c", code, f"{url}/metrics", api_token],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    wanted = ("semcom_bytes_received_total", "semcom_frames_stored_total", "semcom_ingest_lag")
    metrics: dict[str, float] = {}
    for line in out.stdout.splitlines():
        if line.startswith(wanted):
            name, _, value = line.rpartition(" ")
            metrics[name.split("{")[0]] = float(value)
    return metrics


class Interrupted(EmulationError):
    """SIGTERM/SIGHUP arrived during a run (everything it made was removed)."""


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Interrupted` (and SIGINT into KeyboardInterrupt
    even where a parent shell ignored it), so the ``finally`` blocks remove namespaces and
    stop the children; the previous handlers come back afterwards. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(f"{signal.Signals(signum).name}: emulation stopped, cleaned up")

    previous = {
        sig: signal.signal(sig, handler)
        for sig, handler in (
            (signal.SIGTERM, interrupt),
            (signal.SIGHUP, interrupt),
            (signal.SIGINT, signal.default_int_handler),
        )
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _topology(profile: LinkProfile, queue_ms: float) -> Iterator[Topology]:
    netns.check_privileges()
    stale = netns.cleanup_leftovers()
    if stale:
        logger.warning("removed leftover namespaces: %s", ", ".join(stale))
    relay = profile.rtt_ms > 0 or profile.jitter_ms > 0 or profile.loss > 0
    topo = netns.create(relay=relay)
    try:
        netns.shape(topo, profile.rate_bps, queue_ms=queue_ms)
        yield topo
    finally:
        netns.destroy(topo)


def emulate(
    profile: LinkProfile,
    options: EdgeOptions,
    duration_s: float,
    *,
    workdir: Path | None = None,
    queue_ms: float = 500.0,
    seed: int = 0,
) -> EmulationResult:
    """Run cloud and edge over the emulated link for ``duration_s`` of committed traffic.

    Needs root (raises :class:`~sim.netns.NotPrivilegedError` otherwise). Everything it creates
    (namespaces, links, processes) is gone when it returns or raises; ``workdir`` (default: a
    new temporary folder, kept) holds the logs, the cloud DB and the edge's spool.
    """
    work = workdir or Path(tempfile.mkdtemp(prefix="semcom-emulate-"))
    work.mkdir(parents=True, exist_ok=True)
    token, api_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    procs: list[_Proc] = []
    relay_counters: dict[str, int] = {}
    with _signals_raise(), _topology(profile, queue_ms) as topo:
        try:
            relay = None
            if profile.rtt_ms > 0 or profile.jitter_ms > 0 or profile.loss > 0:
                relay = _start_relay(topo, profile, work, seed)
                procs.append(relay)
            url = f"http://{topo.cloud_addr}:{CLOUD_PORT}"
            db = work / "cloud.db"
            cloud = _spawn(topo, topo.cloud_ns, "cloud", [
                sys.executable, "-m", "semcom", "cloud", "serve", "--host", topo.cloud_addr,
                "--port", str(CLOUD_PORT), "--db", f"sqlite:///{db}",
                "--data-dir", str(work / "cloud-data"), "--edge", f"{EDGE_ID}={token}",
                "--api-token", f"emulate={api_token}", "--ice-host-address", topo.cloud_addr,
            ], work, _child_env({}))  # fmt: skip
            procs.append(cloud)
            _wait_for(cloud, lambda: "listening on" in cloud.tail(100_000), 120, "listening line")
            spool = work / "spool.db"
            edge = _spawn(topo, topo.edge_ns, "edge", _edge_args(options, url, topo, spool), work,
                          _child_env({"SEMCOM_EDGE__UPLINK__TOKEN": token,
                                      "SEMCOM_EDGE__UPLINK__DRAIN_TIMEOUT_S":
                                          str(options.drain_timeout_s)}))  # fmt: skip
            procs.append(edge)
            _wait_for(edge, lambda: _first_commit_us(db) is not None, START_TIMEOUT_S,
                      "message committed by the cloud")  # fmt: skip
            t0_us = _first_commit_us(db)
            assert t0_us is not None
            end = t0_us / 1e6 + duration_s
            while time.time() < end:
                edge.check()
                cloud.check()
                time.sleep(min(1.0, max(0.0, end - time.time())))
            edge.proc.send_signal(signal.SIGINT)  # the edge stops capturing, flushes, exits
            edge.proc.wait(options.drain_timeout_s + 60)
            metrics = _scrape_metrics(topo, url, api_token)
            wire = netns.shaped_stats(topo)
        finally:
            for proc in reversed(procs):
                proc.stop()
            if relay_proc := next((p for p in procs if p.name == "relay"), None):
                relay_counters = _relay_counters(relay_proc)
    rows = _journal(db)
    stats = summarise(rows, t0_us, duration_s)
    edge_log = edge.tail(100_000)
    matches = list(_SUMMARY.finditer(edge_log))
    match = matches[-1] if matches else None
    summary_line = next(
        (line for line in reversed(edge_log.splitlines()) if "frames in" in line), ""
    )
    sent = wire.get("sent_bytes", 0)
    return EmulationResult(
        profile={
            "rate_bps": profile.rate_bps,
            "rtt_ms": profile.rtt_ms,
            "jitter_ms": profile.jitter_ms,
            "loss": profile.loss,
            "name": getattr(profile, "name", "custom"),
        },
        window_s=duration_s,
        latency_source="cloud journal: commit time (received_us) - edge capture time "
        "(capture_ts_us) of each message captured in the window; one host clock",
        wire={
            "sent_bytes": sent,
            "dropped_packets": wire.get("dropped", 0),
            "wire_bps_whole_run": sent * 8 / max(1e-9, _run_span_s(rows)),
            "rate_bps": profile.rate_bps,
        },
        undelivered_messages=_spool_pending(spool),
        edge_summary=summary_line,
        edge={k: float(v) for k, v in match.groupdict().items()} if match else {},
        relay=relay_counters,
        cloud_metrics=metrics,
        random_init_encoder=options.random_init_encoder,
        workdir=str(work),
        **stats,
    )


def _run_span_s(rows: list[Row]) -> float:
    """Seconds from the first capture to the last commit (the span the qdisc counted over)."""
    return (max(r[1] for r in rows) - min(r[0] for r in rows)) / 1e6 if rows else 0.0


def _edge_args(options: EdgeOptions, url: str, topo: Topology, spool: Path) -> list[str]:
    args = [
        sys.executable, "-m", "semcom", "edge", "run", "--source", str(options.source),
        "--detector", str(options.detector), "--imgsz", str(options.imgsz), "--cloud", url,
        "--edge-id", EDGE_ID, "--spool", str(spool), "--ice-host-address", topo.edge_addr,
        "--no-status", "--loop" if options.loop else "--no-loop", "--pace",
    ]  # fmt: skip
    for flag, value in (
        ("--encoder", options.encoder),
        ("--encoder-runtime", options.encoder_runtime),
        ("--codec", options.codec),
        ("--ladder", options.ladder),
        ("--max-rate", options.max_rate),
    ):
        if value is not None:
            args += [flag, value]
    if options.encoder_weights is not None:
        args += ["--encoder-weights", str(Path(options.encoder_weights).resolve())]
    args += model_kwargs_args(options.model_kwargs, options.encoder_preprocess)
    if options.random_init_encoder:
        args.append("--random-init-encoder")
    return [*args, *options.extra_args]


def _start_relay(topo: Topology, profile: LinkProfile, work: Path, seed: int) -> _Proc:
    args = [
        sys.executable, "-m", "sim.relay", "--tun", topo.tun_if, "--edge-net", str(topo.edge_net),
        "--delay-ms", str(profile.rtt_ms / 2), "--jitter-ms", str(profile.jitter_ms),
        "--loss-up", str(profile.loss), "--loss-down", str(profile.loss), "--seed", str(seed),
    ]  # fmt: skip
    out = work / "relay.out"
    with open(out, "wb") as fh:
        relay = _spawn(topo, topo.router_ns, "relay", args, work, _child_env({}), stdout=fh)
    _wait_for(relay, lambda: out.read_text().startswith("ready"), 30, "ready line")
    return relay


def _relay_counters(relay: _Proc) -> dict[str, int]:
    out = relay.log.with_name("relay.out")
    lines = out.read_text().splitlines() if out.exists() else []
    try:
        return {k: int(v) for k, v in json.loads(lines[-1]).items()} if len(lines) > 1 else {}
    except (ValueError, AttributeError):
        return {}
