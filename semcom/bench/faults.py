"""``semcom bench faults``: nothing lost, nothing twice, under crashes and outages.

Per transport (WebRTC, WebSocket), in a temporary folder, on 127.0.0.1:

1. start ``semcom cloud serve`` (SQLite catalog, faiss index; tokens as digests in its
   config), a :class:`~semcom.bench.linkcut.LinkCut` middlebox in front of it, and
   ``semcom edge replay --synthetic`` (a traffic scene *with embeddings*; synthetic vectors)
   dialing the middlebox, with a spool far larger than the run needs (evictions are reported
   anyway) and a reconnect backoff capped at ``RECONNECT_MAX_S``;
2. play the seeded schedule of :mod:`semcom.bench.fault_schedule`: SIGKILL the cloud or the
   edge and restart it (a killed edge resumes the rest of the stream on the same spool), stop
   the cloud for a while, black-hole the link; a fault counts when it hit a running process
   (or, for a blackhole, held back traffic);
3. let the edge finish the stream and drain its spool (``drain_s``: from the later of the
   stream's end and the last fault, to the spool being empty), wait for the index to catch up,
   read ``/metrics``, stop the cloud, and compare the edge's spool with the cloud's catalog
   (:mod:`semcom.bench.fault_audit`).

JSON: one object per transport under ``runs``; ``ok`` and the exit status (1 when not ok)
say whether every run lost, duplicated, left behind or failed to catalog or index nothing.
Per run: ``produced`` (seqs the edge's spool allocated), ``stored`` (of those, distinct seqs
in the cloud's journal), ``lost`` (produced, not stored, not quarantined, not still spooled;
``lost_seqs`` lists the first), ``duplicated`` (catalog rows beyond what their frames yield,
plus journal frames repeating another's content; ``duplicates`` splits it), ``quarantined``,
``left_in_spool``, ``spool_dropped`` (evictions), ``index_missing`` (catalog embeddings not in
the index), ``kills`` and ``outages`` (faults that hit a running process or held back traffic;
``faults_hit_in_session``: of those, the ones when the cloud counted an open edge session),
``drain_s``, and every fault under ``events``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from semcom.bench import fault_audit as audit
from semcom.bench.fault_schedule import (
    BLACKHOLE,
    CLOUD_DOWN,
    DEFAULT_EVERY_S,
    KILL_CLOUD,
    KILL_EDGE,
    KILLS,
    Fault,
    make_schedule,
)
from semcom.bench.linkcut import LinkCut
from semcom.bench.procs import (
    ChildError,
    Children,
    CloudChild,
    CloudSpec,
    EdgeChild,
    EdgeSpec,
    SyntheticStream,
    free_port,
)

EDGE_ID = "bench-faults"
RECONNECT_MAX_S = 4.0
#: The backlog after an outage steps the edge down to int8 and back, so the cloud receives
#: embeddings of two codecs, interleaved, in one space.
LADDER = ("f16", "int8")
DRAIN_LIMIT_S = 600.0
DRAIN_RETRIES = 3
INDEX_SETTLE_S = 60.0
LINK_CUT = (
    "blackhole: a user-space middlebox between edge and cloud stops relaying; TCP "
    "(signaling, WebSocket) is neither read nor written (senders stall, new connections are "
    "held), and WebRTC's UDP, which the middlebox relays because it rewrites the one UDP ICE "
    "candidate of each side in the SDP (both pinned to 127.0.0.1), is dropped datagram by "
    "datagram; cloud_down: the cloud is stopped (SIGTERM) and restarted after the outage"
)


def _log(transport: str, t0: float, text: str) -> None:
    click.echo(f"[faults {transport} {time.monotonic() - t0:6.1f}s] {text}", err=True)


@dataclass
class _Run:
    """One transport's processes and what happened to them."""

    transport: str
    seconds: float
    cloud: CloudChild
    edge: EdgeChild
    cut: LinkCut
    tracks_per_s: float
    t0: float = 0.0
    unexpected: int = 0

    def say(self, text: str) -> None:
        _log(self.transport, self.t0, text)

    def remaining(self) -> float:
        return max(0.0, self.seconds - (time.monotonic() - self.t0))

    def start_edge(self) -> None:
        left = self.remaining()
        stream = SyntheticStream(left if left >= 0.5 else 0.0, self.tracks_per_s)
        self.edge.restart_with(stream)
        self.edge.start()

    def watch(self, until: float, *, edge_may_exit: bool = False) -> None:
        """Wait until ``until`` (monotonic), restarting a process that ended by itself."""
        while time.monotonic() < until:
            if not self.cloud.alive:
                self.unexpected += 1
                self.say(f"the cloud exited by itself ({self.cloud.returncode}): restarting")
                self.cloud.start()
                self.cloud.wait_ready()
            finished = self.edge.returncode == 0 and self.remaining() < 1.0  # stream done
            if not self.edge.alive and not edge_may_exit and not finished:
                self.unexpected += 1
                self.say(f"the edge exited by itself ({self.edge.returncode}): restarting")
                self.start_edge()
            time.sleep(0.2)

    def apply(self, fault: Fault) -> dict[str, Any]:
        at = time.monotonic() - self.t0
        detail: dict[str, Any] = {"spooled": self.spooled(), "in_session": self.in_session()}
        if fault.kind == KILL_CLOUD:
            hit = self.cloud.kill()
            self.cloud.start()
            detail["restart_s"] = round(self.cloud.wait_ready(), 1)
        elif fault.kind == KILL_EDGE:
            hit = self.edge.kill()
            self.start_edge()
        elif fault.kind == CLOUD_DOWN:
            hit = self.cloud.terminate()
            time.sleep(fault.duration_s)
            self.cloud.start()
            detail["restart_s"] = round(self.cloud.wait_ready(), 1)
        elif fault.kind == BLACKHOLE:
            self.cut.block()
            time.sleep(fault.duration_s)
            report = self.cut.unblock()
            hit = report.hit
            detail.update(report.__dict__)
        else:  # pragma: no cover - the schedule makes only the kinds above
            raise ValueError(fault.kind)
        event = {**fault.to_dict(), "t_s": round(at, 1), "hit": hit, **detail}
        self.say(
            f"{fault.kind}{f' {fault.duration_s:g} s' if fault.duration_s else ''}: "
            f"{'hit' if hit else 'missed'} {detail}"
        )
        return event

    def in_session(self) -> bool:
        """Whether the edge holds a session with the cloud now (the cloud says so)."""
        try:
            return self.cloud.metrics(timeout_s=2.0).get("semcom_sessions_active", 0.0) > 0
        except OSError:
            return False

    def spooled(self) -> int | None:
        """Frames in the edge's spool now (None before it exists or while it is locked)."""
        try:
            return len(audit.read_spool(self.edge.spec.spool_path).pending)
        except sqlite3.Error:
            return None

    def drain(self) -> float:
        """Wait for the edge to finish and empty its spool; seconds from now."""
        start = time.monotonic()
        deadline = start + self.remaining() + DRAIN_LIMIT_S
        retries = 0
        while time.monotonic() < deadline:
            self.watch(time.monotonic() + 0.5, edge_may_exit=True)
            if self.edge.alive:
                continue
            left = audit.read_spool(self.edge.spec.spool_path).pending
            if not left:
                return time.monotonic() - start
            retries += 1
            if retries > DRAIN_RETRIES:
                raise ChildError(
                    f"the edge exited ({self.edge.returncode}) with {len(left)} frames spooled, "
                    f"{DRAIN_RETRIES} times:\n{self.edge.log_tail()}"
                )
            self.say(f"the edge exited ({self.edge.returncode}) with {len(left)} spooled: again")
            self.start_edge()
        raise ChildError(f"the edge did not drain its spool within {DRAIN_LIMIT_S:g} s")

    def settle_index(self) -> dict[str, float]:
        """``/metrics`` once the indexer has nothing pending (or after INDEX_SETTLE_S)."""
        deadline = time.monotonic() + INDEX_SETTLE_S
        quiet = 0
        metrics: dict[str, float] = {}
        while time.monotonic() < deadline and quiet < 3:
            time.sleep(1.0)
            try:
                metrics = self.cloud.metrics()
            except OSError as exc:  # reported as everything missing if it never answers
                self.say(f"/metrics: {exc}")
                quiet = 0
                continue
            pending = metrics.get("semcom_index_pending_vectors", 0.0)
            quiet = quiet + 1 if pending == 0 else 0
        return metrics


def run_transport(
    transport: str, schedule: list[Fault], seconds: float, workdir: Path, tracks_per_s: float
) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    cloud_port = free_port()
    cut = LinkCut("127.0.0.1", cloud_port)
    cut.start()
    try:
        with Children() as kids:
            cloud = CloudChild(CloudSpec(workdir / "cloud", cloud_port, {EDGE_ID: token}))
            uplink = {
                "ladder": list(LADDER),
                "spool_max_bytes": "8GiB",
                "reconnect_max_s": RECONNECT_MAX_S,
                "drain_timeout_s": DRAIN_LIMIT_S,
            }
            spec = EdgeSpec(EDGE_ID, cut.url, token, workdir / "edge", transport, uplink=uplink)
            edge = EdgeChild(spec, SyntheticStream(seconds, tracks_per_s))
            kids.add(cloud)
            kids.add(edge)
            run = _Run(transport, seconds, cloud, edge, cut, tracks_per_s, t0=time.monotonic())
            cloud.start()
            run.say(f"cloud ready in {cloud.wait_ready():.1f} s; edge dials {cut.url}")
            run.t0 = time.monotonic()
            run.start_edge()
            events = []
            for fault in schedule:
                run.watch(run.t0 + fault.at_s)
                events.append(run.apply(fault))
            run.watch(run.t0 + seconds)
            run.say("stream over: draining")
            drain_s = run.drain()
            run.say(f"drained in {drain_s:.1f} s; waiting for the index")
            metrics = run.settle_index()
            cloud.terminate()
    finally:
        cut.close()
    return _report(run, events, drain_s, metrics, edge)


def _report(
    run: _Run,
    events: list[dict[str, Any]],
    drain_s: float,
    metrics: dict[str, float],
    edge: EdgeChild,
) -> dict[str, Any]:
    spool = audit.read_spool(edge.spec.spool_path)
    evicted = audit.evicted_seqs(edge.log_path.read_text(errors="replace"))
    catalog = audit.read_catalog(run.cloud.spec.db_path, EDGE_ID)
    lost = spool.produced - catalog.stored - spool.quarantined - spool.pending
    hits = Counter(e["kind"] for e in events if e["hit"])
    kills = sum(hits[k] for k in KILLS)
    in_session = Counter(e["kind"] for e in events if e["hit"] and e["in_session"])
    return {
        "transport": run.transport,
        "produced": len(spool.produced),
        "stored": len(catalog.stored & spool.produced),
        "lost": len(lost),
        "lost_seqs": audit.listed(lost),
        "lost_evicted_by_spool": len(lost & evicted),
        "duplicated": catalog.duplicated,
        "duplicates": catalog.duplicates,
        "stored_unknown_seqs": len(catalog.stored - spool.produced),
        "quarantined": len(spool.quarantined),
        "left_in_spool": len(spool.pending),
        "spool_dropped": len(evicted),
        "catalog_missing": catalog.catalog_missing,
        "undecodable": catalog.undecodable,
        **audit.index_missing(metrics, catalog.embeddings),
        "kills": kills,
        "outages": sum(hits.values()) - kills,
        "faults_hit": dict(hits),
        "faults_hit_in_session": dict(in_session),
        "faults_missed": sum(not e["hit"] for e in events),
        "unexpected_exits": run.unexpected,
        "cloud_starts": run.cloud.starts,
        "edge_starts": run.edge.starts,
        "webrtc_sessions_relayed": run.cut.sessions,
        "drain_s": round(drain_s, 1),
        "events": events,
    }


def run_faults(
    seconds: float,
    seed: int,
    transports: list[str],
    every_s: float,
    tracks_per_s: float,
    workdir: Path,
) -> dict[str, Any]:
    schedule = make_schedule(seconds, seed, every_s)
    runs = []
    for transport in transports:
        try:
            runs.append(
                run_transport(transport, schedule, seconds, workdir / transport, tracks_per_s)
            )
        except ChildError as exc:  # reported, and the other transport still runs
            click.echo(f"[faults {transport}] failed: {exc}", err=True)
            runs.append({"transport": transport, "error": str(exc)})
    ok = all(
        "error" not in r
        and r["lost"] == r["duplicated"] == r["index_missing"] == r["left_in_spool"] == 0
        and not any(r["catalog_missing"].values())
        for r in runs
    )
    return {
        "benchmark": "faults",
        "seconds": seconds,
        "seed": seed,
        "every_s": every_s,
        "stream": (
            f"synthetic traffic scene (not real embeddings): {tracks_per_s:g} road users/s for "
            "10 s each, an embedding each 1 s, 768-d, f16 or int8 (the edge's ladder picks), "
            "counts at 10 Hz, boxes at 2 Hz"
        ),
        "faults": LINK_CUT,
        "reconnect_max_s": RECONNECT_MAX_S,
        "ladder": list(LADDER),
        "schedule": [f.to_dict() for f in schedule],
        "ok": ok,
        "runs": runs,
    }


def _transports(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in ("webrtc", "websocket")]
    if bad or not names:
        raise click.BadParameter(f"{value!r}: give webrtc, websocket or both, comma-separated")
    return names


@click.command()
@click.option("--seconds", type=float, default=60.0, show_default=True, help="Stream length.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the schedule.")
@click.option("--transport", "transports", default="webrtc,websocket", show_default=True)
@click.option(
    "--every",
    "every_s",
    type=float,
    default=DEFAULT_EVERY_S,
    show_default=True,
    help="Mean seconds between faults.",
)
@click.option("--tracks-per-s", type=float, default=4.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the run's files here."
)
def command(
    seconds: float,
    seed: int,
    transports: str,
    every_s: float,
    tracks_per_s: float,
    as_json: bool,
    keep: Path | None,
) -> None:
    """Kill and cut the uplink on a seeded schedule; count what was lost or stored twice."""
    names = _transports(transports)
    try:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            result = run_faults(seconds, seed, names, every_s, tracks_per_s, keep)
        else:
            with tempfile.TemporaryDirectory(prefix="semcom-faults-") as tmp:
                result = run_faults(seconds, seed, names, every_s, tracks_per_s, Path(tmp))
    except ChildError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result))
    else:
        for run in result["runs"]:
            click.echo(f"{run['transport']}:")
            for key, value in run.items():
                if key != "events":
                    click.echo(f"  {key:>24}: {value}")
    if not result["ok"]:
        raise SystemExit(1)
