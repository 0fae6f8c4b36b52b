"""``semcom bench ingest``: RoI messages per second, from encoded bytes to committed and indexed.

Two modes:

- ``--transport websocket|webrtc``: real sessions against real ``semcom cloud serve``
  processes (one on SQLite, or ``--replicas`` on one PostgreSQL) from a load generator process
  speaking the uplink's protocol (:mod:`semcom.bench.ingest_server`): committed messages/s
  counted in the journal, ack latency, CPU per 1,000 messages of each side, and the ledger
  (produced, stored, lost, duplicated) read from the catalog;
- ``--transport none`` (the default): the cloud's ingest path in this process, without a
  network: several edges' sessions (``LiveSession``: decode and validate with ``shared``, the
  group-committing writer: journal + catalog rows in one SQLite transaction, ack after commit)
  feed the indexer (faiss; exact below its threshold, IVF above, trained on the way). The
  clock stops when the last vector is in the index.

The messages are ``Embedding`` messages (one RoI each: vector code, box, class, confidence,
track id, timestamps; :mod:`semcom.bench.ingest_stream`), batched as an edge batches them
(<= 60,000 bytes per data-channel message). Their vectors are a clustered synthetic
distribution (a Gaussian mixture on a low-rank subspace plus noise, unit-normalised), stated
in the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import click
import numpy as np
import yaml

from cloud.app import build_services
from cloud.config import load_config
from cloud.ingest import LiveSession, pipelined
from semcom.bench.ingest_server import ServerSettings, run_server
from semcom.bench.ingest_stream import batches, edge_stream, vectors
from shared.synthetic import ClusteredSpec, describe
from shared.vectors import create_codec

BATCH_BYTES = 60_000


async def _feed(live: LiveSession, hello: bytes, data: list[bytes]) -> None:
    """One edge's connection, served as the transports serve it (``pipelined``)."""
    messages = iter([hello, *data])

    async def receive() -> bytes | None:
        return next(messages, None)

    async def send(_frame: bytes) -> None:
        return None

    await pipelined(live, receive, send)


def run(n: int, dim: int, codec_spec: str, edges: int, seed: int, workdir: Path) -> dict[str, Any]:
    config = load_config(None, {"data_dir": str(workdir), "index": {"save_every_s": 3600}})
    services = build_services(config)
    codec = create_codec(codec_spec, dim)
    spec = ClusteredSpec(dim)
    rng = np.random.default_rng(seed)
    per_edge = n // edges
    click.echo(f"encoding {per_edge * edges} messages for {edges} edges...", err=True)
    every = vectors(per_edge * edges, dim, seed)
    streams = []
    for e in range(edges):
        mine = every[e * per_edge : (e + 1) * per_edge]
        stream = edge_stream(f"edge-{e}", mine, codec, rng)
        streams.append((stream.hello, batches(stream.frames, BATCH_BYTES)))
    wire_bytes = sum(len(b) for _, bs in streams for b in bs)

    async def main() -> float:
        services.indexer.start()
        services.writer.start()
        services.indexer.wait_idle()  # catch-up of an empty catalog
        lives = [services.ingest.open(f"edge-{e}") for e in range(edges)]
        started = time.perf_counter()
        await asyncio.gather(
            *(_feed(live, h, bs) for live, (h, bs) in zip(lives, streams, strict=True))
        )
        committed = time.perf_counter() - started
        await asyncio.to_thread(services.indexer.wait_idle)
        total = time.perf_counter() - started
        for live in lives:
            assert live.session.stats.stored == per_edge, live.session.stats
        nonlocal_committed.append(committed)
        return total

    nonlocal_committed: list[float] = []
    click.echo("ingesting...", err=True)
    total = asyncio.run(main())
    index_info = services.indexer.describe()
    spaces = cast(dict[str, dict[str, Any]], index_info["spaces"])
    indexed = sum(int(space["size"]) for space in spaces.values())
    if indexed != per_edge * edges:
        raise click.ClickException(f"{indexed} vectors indexed of {per_edge * edges} stored")
    services.writer.stop()
    services.indexer.stop()
    db = workdir / "catalog.db"
    messages = per_edge * edges
    commit = next(iter(services.metrics.commit_frames.collect())).samples
    txn = next(s.value for s in commit if s.name.endswith("_count"))
    return {
        "messages": messages,
        "messages_per_s": round(messages / total, 1),
        "committed_per_s": round(messages / nonlocal_committed[0], 1),
        "seconds": round(total, 2),
        "edges": edges,
        "dim": dim,
        "codec": codec.codec_id,
        "wire_bytes_per_message": round(wire_bytes / messages, 1),
        "transactions": int(txn),
        "frames_per_transaction": round(messages / max(txn, 1), 1),
        "catalog": "sqlite (WAL, synchronous=FULL)",
        "catalog_bytes_per_message": round(
            sum(p.stat().st_size for p in workdir.glob("catalog.db*")) / messages, 1
        )
        if db.exists()
        else None,
        "index": index_info["spaces"],
        "vectors": f"synthetic clustered: {describe(spec)}",
        "machine_note": "figures from this run on this machine",
    }


def _server_settings(
    transport: str,
    n: int,
    dim: int,
    codec_spec: str,
    edges: int,
    seed: int,
    replicas: int,
    db: str,
    db_url: str | None,
    batch_bytes: int,
    window_bytes: int,
    cuts: int,
    rate: float,
    deadline_s: float,
    cloud_settings: tuple[str, ...],
) -> ServerSettings:
    if db_url is not None:
        db = "postgresql"
    if replicas > 1 and db != "postgresql":
        raise click.BadParameter("replicas share one PostgreSQL: add --db postgresql")
    return ServerSettings(
        transport,
        edges,
        n // edges,
        dim,
        codec_spec,
        seed,
        replicas,
        db,
        db_url,
        batch_bytes,
        window_bytes,
        cuts,
        rate,
        deadline_s,
        dict(_setting(v) for v in cloud_settings),
    )


def _setting(value: str) -> tuple[str, Any]:
    """``KEY=VALUE`` (a dotted config key, a YAML value) -> (key, value)."""
    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint="--cloud-setting")
    return key.strip(), yaml.safe_load(raw)


def _print_server(report: dict[str, Any]) -> None:
    lat = report["ack_latency_ms"]
    click.echo(
        f"{report['stored']} of {report['produced']} RoI messages stored from {report['edges']} "
        f"{report['transport']} sessions on {report['replicas']} cloud(s), {report['db']}: "
        f"{report['messages_per_s']:.0f} msg/s committed; ack p50 {lat['p50']} ms, "
        f"p99 {lat['p99']} ms"
    )
    click.echo(f"  CPU s per 1,000 messages: {report['cpu_s_per_1000']}")
    click.echo(f"  machine meanwhile: {report['machine']}")
    click.echo(
        f"  lost {report['lost']}, duplicated {report['duplicated']}, "
        f"reconnects {report['reconnects']}, cloud errors {report['cloud_errors']}"
    )


@click.command()
@click.option(
    "--transport",
    type=click.Choice(["none", "websocket", "webrtc"]),
    default="none",
    show_default=True,
    help="none: the ingest path in this process, no network; websocket/webrtc: a load "
    "generator process with real sessions against `semcom cloud serve` process(es).",
)
@click.option("--n", "n", default=200_000, show_default=True, help="RoI messages in all.")
@click.option("--dim", default=384, show_default=True, help="Embedding dimension.")
@click.option("--codec", "codec_spec", default="int8", show_default=True, help="f32/f16/int8.")
@click.option("--edges", default=4, show_default=True, help="Concurrent edge sessions.")
@click.option("--seed", default=0, show_default=True)
@click.option("--replicas", type=click.IntRange(1, 8), default=1, show_default=True, help="Clouds.")
@click.option("--db", type=click.Choice(["sqlite", "postgresql"]), default="sqlite")
@click.option(
    "--db-url",
    default=None,
    help="An existing PostgreSQL (SQLAlchemy URL) instead of a "
    "throwaway cluster; this run's edges get fresh ids.",
)
@click.option("--batch-bytes", default=60_000, show_default=True, help="Per data message.")
@click.option("--window-bytes", default=262_144, show_default=True, help="Unacked per session.")
@click.option(
    "--cuts",
    default=0,
    show_default=True,
    help="Connections each session drops on purpose (unacknowledged frames are sent again).",
)
@click.option(
    "--rate",
    default=0.0,
    show_default=True,
    help="New messages/s per session (0: as fast "
    "as the send window allows: a saturation run, whose ack latency is mostly queueing).",
)
@click.option("--deadline-s", default=900.0, show_default=True, help="For the sending phase.")
@click.option(
    "--cloud-setting",
    "cloud_settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A cloud config key for this run (dotted, YAML value; repeatable), e.g. "
    "describer.enabled=false. Default: the cloud's defaults.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the run's files here."
)
@click.pass_context
def command(
    ctx: click.Context,
    transport: str,
    n: int,
    dim: int,
    codec_spec: str,
    edges: int,
    seed: int,
    replicas: int,
    db: str,
    db_url: str | None,
    batch_bytes: int,
    window_bytes: int,
    cuts: int,
    rate: float,
    deadline_s: float,
    cloud_settings: tuple[str, ...],
    as_json: bool,
    keep: Path | None,
) -> None:
    """Ingest throughput: RoI messages -> committed (journal + catalog) and indexed (faiss)."""
    if n < edges:
        raise click.BadParameter("need at least one message per edge", param_hint="--n")
    if transport == "none" and (
        replicas > 1 or db != "sqlite" or db_url or cuts or rate or cloud_settings
    ):
        raise click.BadParameter(
            "--replicas, --db, --db-url, --cuts, --rate and --cloud-setting need real sessions "
            "(--transport)"
        )
    with contextlib.ExitStack() as stack:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            workdir = keep
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="semcom-bench-ingest-"))
            workdir = Path(tmp)
        if transport == "none":
            report = run(n, dim, codec_spec, edges, seed, workdir)
        else:
            settings = _server_settings(
                transport, n, dim, codec_spec, edges, seed, replicas, db, db_url,
                batch_bytes, window_bytes, cuts, rate, deadline_s, cloud_settings,
            )  # fmt: skip
            report = run_server(settings, workdir)
    if as_json:
        click.echo(json.dumps(report))
    elif transport != "none":
        _print_server(report)
    else:
        _print_inprocess(report, dim, edges)
    if transport != "none" and not report["ok"]:
        ctx.exit(1)


def _print_inprocess(report: dict[str, Any], dim: int, edges: int) -> None:
    click.echo(
        f"{report['messages']} RoI messages ({report['codec']}, {dim}-d) from {edges} edges: "
        f"{report['messages_per_s']:.0f} msg/s committed and indexed "
        f"({report['committed_per_s']:.0f} msg/s committed), {report['seconds']} s"
    )
    click.echo(
        f"  {report['transactions']} transactions, {report['frames_per_transaction']} frames "
        f"each; catalog {report['catalog_bytes_per_message']} B/message"
    )
    click.echo(f"  index: {report['index']}")
    click.echo(f"  vectors: {report['vectors']}")
