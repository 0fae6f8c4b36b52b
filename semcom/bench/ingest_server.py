"""``semcom bench ingest --transport websocket|webrtc``: real sessions against real clouds.

On 127.0.0.1, in a temporary folder:

1. the database: the cloud's SQLite catalog, or PostgreSQL (a throwaway cluster,
   :mod:`semcom.bench.pgcluster`, or ``--db-url``);
2. ``--replicas`` ``semcom cloud serve`` processes on it (:mod:`semcom.bench.procs`), one
   after the other (each brings the schema up to date when it starts);
3. the load generator (:mod:`semcom.bench.ingest_client`), a process of its own: N sessions
   over the chosen transport, edges given to the replicas in turn, each sending its RoI
   ``Embedding`` frames as an edge's uplink does until every one is acknowledged;
4. the clouds stop; the ledger is read from the database (:mod:`semcom.bench.ingest_audit`).

Figures: ``messages_per_s`` is frames stored in the journal (counted there) over the span from
the moment every session was connected and sending began, to the journal's last commit. Ack
latency is send -> Ack per frame at the load generator (ms). CPU seconds (``/proc``) of the
cloud process(es), of the throwaway PostgreSQL (postmaster and backends) and of the load
generator are read at both ends of the sending phase, with the whole machine's busy time:
``other_busy_cpu_s`` is what other programs spent meanwhile (the machine's load).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import click

from semcom.bench import cpu
from semcom.bench.ingest_audit import EdgeLedger, read_ledger
from semcom.bench.ingest_client import ClientPlan
from semcom.bench.ingest_sender import EdgePlan, SenderSettings
from semcom.bench.load import percentiles
from semcom.bench.pgcluster import PostgresUnavailable, cluster
from semcom.bench.procs import Child, ChildError, Children, CloudChild, CloudSpec, free_port
from shared.synthetic import ClusteredSpec, describe

PREPARE_SLACK_S: Final = 600.0  # encoding the streams and connecting, before the clock
INDEX_WAIT_S: Final = 120.0  # after the last ack, for the clouds' indexes to hold every vector


@dataclass(frozen=True)
class ServerSettings:
    transport: str
    edges: int
    messages: int  # per edge
    dim: int
    codec: str
    seed: int
    replicas: int
    db: str  # "sqlite" or "postgresql"
    db_url: str | None
    batch_bytes: int
    window_bytes: int
    cuts: int
    rate: float  # new messages/s per session; 0: as fast as the window allows
    deadline_s: float
    #: cloud config keys set for this run (dotted, e.g. {"describer.enabled": False})
    cloud_settings: Mapping[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _database(s: ServerSettings, workdir: Path) -> Iterator[tuple[str, str, int | None]]:
    """(URL, description, pid of a server to measure) of the database to use."""
    if s.db == "sqlite":
        yield f"sqlite:///{workdir / 'catalog.db'}", "sqlite (WAL, synchronous=FULL)", None
    elif s.db_url is not None:
        yield s.db_url, "postgresql (--db-url: its CPU is not measured)", None
    else:
        try:
            with cluster() as pg:
                yield pg.url, f"{pg.version}: throwaway cluster, fsync on", pg.postmaster_pid
        except PostgresUnavailable as exc:
            raise click.ClickException(str(exc)) from None


def _nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{"a.b": v} -> {"a": {"b": v}}: config keys as the cloud's YAML file holds them."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _index_vectors(clouds: list[CloudChild]) -> list[int]:
    out = []
    for cloud in clouds:
        metrics = cloud.metrics()
        out.append(int(sum(v for k, v in metrics.items() if k.startswith("semcom_index_vectors"))))
    return out


def _cloud_figures(clouds: list[CloudChild]) -> dict[str, Any]:
    """Errors the clouds sent (by code), failed transactions, and their group commits."""
    errors: Counter[str] = Counter()
    commits: Counter[str] = Counter()
    for cloud in clouds:
        for key, value in cloud.metrics().items():
            name = key.split("{")[0]
            if name == "semcom_errors_sent_total":
                errors[key.split('code="')[1].split('"')[0]] += int(value)
            elif name == "semcom_writer_failures_total":
                errors["writer_failures"] += int(value)
            elif name in ("semcom_commit_frames_sum", "semcom_commit_frames_count"):
                commits[name] += int(value)
            elif name == "semcom_commit_seconds_sum":
                commits["seconds"] += int(value * 1e6)
    txns = commits["semcom_commit_frames_count"]
    return {
        "errors": dict(errors),
        "transactions": txns,
        "frames_per_transaction": round(commits["semcom_commit_frames_sum"] / txns, 1)
        if txns
        else None,
        "transaction_ms": round(commits["seconds"] / 1e3 / txns, 1) if txns else None,
    }


def _wait_indexed(clouds: list[CloudChild], want: int) -> tuple[list[int], float | None]:
    """Poll the clouds' index sizes until each holds ``want`` vectors (a replica's index
    follows the catalog, so it holds the other replicas' vectors too); returns the sizes and
    the seconds waited after the last ack (None: not within ``INDEX_WAIT_S``)."""
    started = time.monotonic()
    sizes = _index_vectors(clouds)
    while min(sizes) < want and time.monotonic() - started < INDEX_WAIT_S:
        time.sleep(0.5)
        sizes = _index_vectors(clouds)
    return sizes, (round(time.monotonic() - started, 1) if min(sizes) >= want else None)


def _loadgen(s: ServerSettings, plan: ClientPlan, workdir: Path, kids: Children) -> dict[str, Any]:
    plan_path, out_path = workdir / "loadgen-plan.json", workdir / "loadgen-result.json"
    plan_path.write_text(json.dumps(asdict(plan)))
    argv = [sys.executable, "-m", "semcom.bench.ingest_client", str(plan_path), str(out_path)]
    child = Child("loadgen", argv, workdir / "loadgen.log", cwd=workdir)
    kids.add(child)
    child.start()
    code = child.wait(s.deadline_s + PREPARE_SLACK_S)
    if code is None:
        child.kill()
        raise ChildError(f"the load generator did not finish:\n{child.log_tail()}")
    if code != 0 or not out_path.exists():
        raise ChildError(f"the load generator failed ({code}):\n{child.log_tail()}")
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


def run_server(s: ServerSettings, workdir: Path) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    tokens = {f"ingest-{run_id}-{i:03d}": secrets.token_urlsafe(24) for i in range(s.edges)}
    with _database(s, workdir) as (url, db_note, db_pid), Children() as kids:
        clouds = []
        for r in range(s.replicas):
            settings = {**_nested(s.cloud_settings), "database": url}
            spec = CloudSpec(workdir / f"cloud-{r}", free_port(), tokens, settings=settings)
            cloud = CloudChild(spec)
            kids.add(cloud)
            cloud.start()
            cloud.wait_ready()
            clouds.append(cloud)
        watch = {f"cloud-{r}": c.pid for r, c in enumerate(clouds) if c.pid is not None}
        if db_pid is not None:
            watch["database"] = db_pid
        edges = [
            EdgePlan(edge, token, clouds[i % len(clouds)].url)
            for i, (edge, token) in enumerate(tokens.items())
        ]
        sender = SenderSettings(
            s.transport,
            s.batch_bytes,
            s.window_bytes,
            heartbeat_s=2.0,
            connect_timeout_s=60.0,
            cuts=s.cuts,
            rate=s.rate,
        )
        plan = ClientPlan(
            sender, edges, s.messages, s.dim, s.codec, s.seed, s.deadline_s, watch=watch
        )
        click.echo(
            f"load generator: {s.edges} {s.transport} sessions x {s.messages} messages "
            f"-> {s.replicas} cloud(s) on {s.db}...",
            err=True,
        )
        load = _loadgen(s, plan, workdir, kids)
        produced_total = s.edges * s.messages
        index_sizes, index_wait_s = _wait_indexed(clouds, produced_total)
        figures = _cloud_figures(clouds)
        for cloud in clouds:
            cloud.terminate()
        ledger = read_ledger(url, dict.fromkeys(tokens, s.messages))
    return _report(s, load, ledger, db_note, index_sizes, index_wait_s, figures)


def _report(
    s: ServerSettings,
    load: dict[str, Any],
    ledger: list[EdgeLedger],
    db_note: str,
    index_sizes: list[int],
    index_wait_s: float | None,
    cloud: dict[str, Any],
) -> dict[str, Any]:
    produced = sum(e.produced for e in ledger)
    stored = sum(e.stored for e in ledger)
    duplicates: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    for e in ledger:
        duplicates.update(e.duplicates)
        missing.update(e.catalog_missing)
    t0 = float(load["t0_wall"])
    last = max((e.last_received_us or 0 for e in ledger), default=0) / 1e6
    first = min((e.first_received_us for e in ledger if e.first_received_us), default=0) / 1e6
    span = last - t0
    spent: dict[str, float | None] = load["cpu_s"]
    cloud_s = [v for k, v in spent.items() if k.startswith("cloud-") and v is not None]
    sides = {"cloud": round(sum(cloud_s), 2), "database": spent.get("database"), "loadgen": None}
    sides["loadgen"] = spent.get("loadgen")
    ours = sum(v for v in spent.values() if v is not None)
    machine = load.get("machine") or {}
    per_edge = load["per_edge"]
    latency = Counter({float(k): int(v) for k, v in load["latency_hist"].items()})
    acked = sum(int(e["acked"]) for e in per_edge)
    failures: Counter[str] = Counter()
    for e in per_edge:
        failures.update(e["failures"])
    lost = produced - stored
    dup = sum(duplicates.values())
    return {
        "benchmark": "ingest",
        "transport": s.transport,
        "edges": s.edges,
        "replicas": s.replicas,
        "db": db_note,
        "messages": produced,
        "messages_per_edge": s.messages,
        "stream": (
            f"RoI Embedding messages ({s.codec}, {s.dim}-d; a new track every 8), batched "
            f"<= {s.batch_bytes} B, window {s.window_bytes} B unacked per session, "
            + (f"{s.rate:g} new messages/s per session" if s.rate else "as fast as that allows")
        ),
        "rate_per_session": s.rate or None,
        "cloud_settings": dict(s.cloud_settings) or "defaults (describer and analytics on)",
        "messages_per_s": round(stored / span, 1) if span > 0 else 0.0,
        "commit_span_s": round(span, 2),
        "first_commit_after_s": round(first - t0, 3) if first else None,
        "ack_latency_ms": percentiles(latency),
        "cpu_s": {**sides, "per_replica": cloud_s},
        "cpu_s_per_1000": {
            k: (round(v * 1000 / stored, 3) if v is not None and stored else None)
            for k, v in sides.items()
        },
        "machine": {
            "cores": cpu.cores(),
            **machine,
            "other_busy_cpu_s": round(float(machine["busy_cpu_s"]) - ours, 2) if machine else None,
            "loadavg_after": round(os.getloadavg()[0], 2),
        },
        "produced": produced,
        "stored": stored,
        "acked": acked,
        "lost": lost,
        "duplicated": dup,
        "duplicates": dict(duplicates),
        "catalog_missing": dict(missing),
        "refused": sum(int(e["refused"]) for e in per_edge),
        "sent_frames": sum(int(e["sent_frames"]) for e in per_edge),
        "cuts_per_session": s.cuts,
        "reconnects": sum(max(0, int(e["connects"]) - 1) for e in per_edge),
        "failures": dict(failures),
        "cloud_errors": cloud["errors"],
        "transactions": cloud["transactions"],
        "frames_per_transaction": cloud["frames_per_transaction"],
        "transaction_ms": cloud["transaction_ms"],
        "index_vectors": index_sizes,
        "index_caught_up_after_s": index_wait_s,
        "prepare_s": load["prepare_s"],
        "connect_s": load["connect_s"],
        "send_s": load["send_s"],
        "timed_out": load["timed_out"],
        "wire_bytes_per_message": round(load["wire_bytes"] / produced, 1) if produced else 0,
        "vectors": f"synthetic clustered: {describe(ClusteredSpec(s.dim))}",
        "ok": lost == 0 and dup == 0 and not load["timed_out"] and not load["crashed"],
    }
