"""``semcom bench load``: N real edges against one cloud: throughput, latency, loss, memory.

On 127.0.0.1, in a temporary folder (:mod:`semcom.bench.procs`):

1. start ``semcom cloud serve`` (SQLite catalog, faiss index) and sample its resident memory
   every second (:mod:`semcom.bench.load_memory`);
2. start N ``semcom edge replay --synthetic`` processes at once, each with its own edge id,
   token and spool, the transports taken in turn (WebRTC, WebSocket, WebRTC, ...);
3. when every edge has sent its stream, drained its spool (everything acknowledged) and exited,
   that is the *end*; then nothing is connected for ``--idle-s`` (*idle*);
4. stop the cloud and compare each edge's spool (every seq it allocated) with the cloud's
   journal and catalog (:mod:`semcom.bench.fault_audit`): ``lost`` = produced, not stored, not
   still spooled or set aside; ``duplicated`` = catalog rows or journal frames stored twice.

Figures: ``committed_per_s`` is frames stored over the span between the journal's first and
last commit; ack latency (edge send -> ack, ms) merges every edge's histogram; ``reconnects``
are connects beyond each edge's first. Memory milestones are the cloud's RSS before any edge
(*start*), ``MID_S`` after the edges started (*at_60s*; at the end when the run is shorter),
at the *end* and after the *idle* wait, each with what the vector indexes hold: their vectors
are data the service keeps in memory by design (no retention: all of them), so
``rss_less_index_mb`` is the part that has to stay flat (slightly low: the index's bytes
count the columns' reserved rows, grown by half when full, whose untouched pages are not
resident).

The exit status is 1 when a message was lost or stored twice, or an edge failed.
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
from typing import Any, Final

import click

from semcom.bench import fault_audit as audit
from semcom.bench.load_memory import RssSampler, index_memory, milestone, ratio
from semcom.bench.procs import (
    Children,
    CloudChild,
    CloudSpec,
    EdgeChild,
    EdgeSpec,
    SyntheticStream,
    free_port,
)

MID_S: Final = 60.0  # the "at_60s" milestone, seconds after the edges start
DRAIN_LIMIT_S: Final = 300.0  # how long an edge may drain its spool after its stream
START_SLACK_S: Final = 120.0  # edges start at once: their imports share the CPUs
RSS_LIMIT: Final = 1.25  # RSS after idle over RSS at 60 s, the bound


@dataclass(frozen=True)
class LoadSettings:
    edges: int
    seconds: float
    idle_s: float
    tracks_per_s: float
    update_s: float
    transports: tuple[str, ...]


def percentiles(hist: Counter[float], qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    """Percentiles (nearest rank) of a value -> count histogram."""
    total = sum(hist.values())
    out: dict[str, float] = {}
    if not total:
        return {f"p{q}": 0.0 for q in qs}
    values = sorted(hist)
    for q in qs:
        rank, seen = max(1, -(-q * total // 100)), 0
        for v in values:
            seen += hist[v]
            if seen >= rank:
                out[f"p{q}"] = v
                break
    return out


def _committed(db: Path) -> tuple[int, float]:
    """Frames in the journal and the seconds between its first and last commit."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        n, lo, hi = conn.execute(
            "SELECT COUNT(*), MIN(received_us), MAX(received_us) FROM journal_frames"
        ).fetchone()
    return int(n), ((hi - lo) / 1e6 if n else 0.0)


def _edge_figures(edge: EdgeChild, db: Path) -> dict[str, Any]:
    """One edge's ledger (its spool against the catalog) and what its report says."""
    spool = audit.read_spool(edge.spec.spool_path)
    catalog = audit.read_catalog(db, edge.name)
    lost = spool.produced - catalog.stored - spool.quarantined - spool.pending
    report: dict[str, Any] = {}
    if edge.report_path is not None and edge.report_path.exists():
        report = json.loads(edge.report_path.read_text())
    uplink = report.get("uplink", {})
    return {
        "edge_id": edge.name,
        "transport": edge.spec.transport,
        "exit": edge.returncode,
        "produced": len(spool.produced),
        "stored": len(catalog.stored & spool.produced),
        "lost": len(lost),
        "lost_seqs": audit.listed(lost),
        "duplicated": catalog.duplicated,
        "left_in_spool": len(spool.pending),
        "quarantined": len(spool.quarantined),
        "acked": int(uplink.get("acked_frames", 0)),
        "reconnects": max(0, int(uplink.get("connects", 0)) - 1),
        "failures": dict(uplink.get("failures", {})),
        "refused_by_cloud": int(uplink.get("rejected_frames", 0)),
        "ack_latency_hist": report.get("ack_latency_hist", {}),
    }


def _cloud_errors(metrics: dict[str, float]) -> dict[str, int]:
    """Errors the cloud sent edges (by code) and failed ingest transactions."""
    out: Counter[str] = Counter()
    for key, value in metrics.items():
        name = key.split("{")[0]
        if name == "semcom_errors_sent_total":
            out[key.split('code="')[1].split('"')[0]] += int(value)
        elif name == "semcom_writer_failures_total":
            out["writer_failures"] += int(value)
    return dict(out)


def run_load(settings: LoadSettings, workdir: Path) -> dict[str, Any]:
    s = settings
    tokens = {f"load-{i:02d}": secrets.token_urlsafe(24) for i in range(s.edges)}
    stream = SyntheticStream(s.seconds, s.tracks_per_s, s.update_s)
    uplink = {"drain_timeout_s": DRAIN_LIMIT_S, "spool_max_bytes": "8GiB"}
    marks: dict[str, dict[str, Any]] = {}
    with Children() as kids:
        cloud = CloudChild(CloudSpec(workdir / "cloud", free_port(), tokens))
        kids.add(cloud)
        cloud.start()
        cloud.wait_ready()
        assert cloud.pid is not None
        sampler = RssSampler(cloud.pid)
        sampler.start()
        marks["start"] = milestone(sampler.sample(), index_memory(cloud.url))
        edges: list[EdgeChild] = []
        for i, (edge_id, token) in enumerate(tokens.items()):
            transport = s.transports[i % len(s.transports)]
            spec = EdgeSpec(edge_id, cloud.url, token, workdir / "edges", transport, uplink=uplink)
            edges.append(EdgeChild(spec, stream))
            kids.add(edges[-1])
            edges[-1].start()
        t0 = time.monotonic()
        deadline = t0 + s.seconds + DRAIN_LIMIT_S + START_SLACK_S
        while any(e.alive for e in edges) and time.monotonic() < deadline:
            if "at_60s" not in marks and time.monotonic() - t0 >= MID_S:
                marks["at_60s"] = milestone(sampler.sample(), index_memory(cloud.url))
            time.sleep(0.2)
        timed_out = [e.name for e in edges if e.alive]
        for edge in edges:
            edge.terminate()
        end_s = time.monotonic() - t0
        marks["end"] = milestone(sampler.sample(), index_memory(cloud.url))
        marks.setdefault("at_60s", marks["end"])
        time.sleep(max(0.0, t0 + end_s + s.idle_s - time.monotonic()))
        marks["idle"] = milestone(sampler.sample(), index_memory(cloud.url))
        sampler.stop()
        metrics = cloud.metrics()
        cloud.terminate()
    per_edge = [_edge_figures(e, cloud.spec.db_path) for e in edges]
    committed, span_s = _committed(cloud.spec.db_path)
    latency: Counter[float] = Counter()
    for fig in per_edge:
        latency.update({float(k): int(v) for k, v in fig.pop("ack_latency_hist").items()})
    failures: Counter[str] = Counter()
    for fig in per_edge:
        failures.update(fig["failures"])
    total = {k: sum(int(f[k]) for f in per_edge) for k in ("produced", "stored", "lost")}
    dup = sum(int(f["duplicated"]) for f in per_edge)
    marks = {k: marks[k] for k in ("start", "at_60s", "end", "idle")}
    rss = {k: m["rss_mb"] for k, m in marks.items()}
    rest = {k: m["rss_less_index_mb"] for k, m in marks.items()}
    idle_ratio = ratio(rss["idle"], rss["at_60s"])
    return {
        "benchmark": "load",
        "edges": s.edges,
        "seconds": s.seconds,
        "transports": dict(Counter(f["transport"] for f in per_edge)),
        "stream": (
            f"per edge: synthetic traffic scene (not real embeddings): {s.tracks_per_s:g} road "
            f"users/s for 10 s each, an embedding each {s.update_s:g} s (768-d, f16), counts "
            "at 10 Hz, boxes at 2 Hz"
        ),
        **total,
        "duplicated": dup,
        "left_in_spool": sum(int(f["left_in_spool"]) for f in per_edge),
        "quarantined": sum(int(f["quarantined"]) for f in per_edge),
        "acked": sum(int(f["acked"]) for f in per_edge),
        "committed_per_s": round(committed / span_s, 1) if span_s else 0.0,
        "commit_span_s": round(span_s, 1),
        "ack_latency_ms": percentiles(latency),
        "reconnects": sum(int(f["reconnects"]) for f in per_edge),
        "errors": {
            "edges_failed": sum(f["exit"] != 0 for f in per_edge),
            "edges_timed_out": timed_out,
            "uplink_failures": dict(failures),
            "refused_by_cloud": sum(int(f["refused_by_cloud"]) for f in per_edge),
            "cloud": _cloud_errors(metrics),
        },
        "end_s": round(end_s, 1),
        "idle_s": s.idle_s,
        "memory": {
            **marks,
            "rss_idle_over_60s": idle_ratio,
            "rss_limit": RSS_LIMIT,
            "rss_less_index_idle_over_60s": ratio(rest["idle"], rest["at_60s"]),
            "rss_timeline_mb": sampler.timeline(t0),
        },
        "rss_mb": rss,
        "ok": total["lost"] == 0 and dup == 0 and all(f["exit"] == 0 for f in per_edge),
        "rss_ok": idle_ratio is not None and idle_ratio <= RSS_LIMIT,
        "per_edge": per_edge,
    }


def _transports(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names or any(n not in ("webrtc", "websocket") for n in names):
        raise click.BadParameter(f"{value!r}: webrtc, websocket or both, comma-separated")
    return names


@click.command()
@click.option("--edges", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--seconds", type=float, default=120.0, show_default=True, help="Stream length.")
@click.option(
    "--idle-s", type=float, default=30.0, show_default=True, help="Idle wait after the end."
)
@click.option("--tracks-per-s", type=float, default=4.0, show_default=True, help="Per edge.")
@click.option("--update-s", type=float, default=1.0, show_default=True)
@click.option(
    "--transports",
    default="webrtc,websocket",
    show_default=True,
    help="Taken in turn by the edges.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the run's files here."
)
@click.pass_context
def command(
    ctx: click.Context,
    edges: int,
    seconds: float,
    idle_s: float,
    tracks_per_s: float,
    update_s: float,
    transports: str,
    as_json: bool,
    keep: Path | None,
) -> None:
    """N real edges (WebRTC and WebSocket) against one cloud: committed/s, ack latency, loss,
    the cloud's memory (loopback)."""
    settings = LoadSettings(edges, seconds, idle_s, tracks_per_s, update_s, _transports(transports))
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        result = run_load(settings, keep)
    else:
        with tempfile.TemporaryDirectory(prefix="semcom-load-") as tmp:
            result = run_load(settings, Path(tmp))
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            if key != "per_edge":
                click.echo(f"{key:>16}: {value}")
    if not result["ok"]:
        ctx.exit(1)
