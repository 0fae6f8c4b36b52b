"""``semcom bench ingest``: RoI messages per second, from encoded bytes to committed and indexed.

The cloud's real ingest path, without a network: several edges' sessions (``LiveSession``:
decode and validate with ``shared``, the group-committing writer: journal + catalog rows in
one SQLite transaction, ack after commit) feed the indexer (faiss; exact below its threshold,
IVF above, trained on the way). The clock stops when the last vector is in the index.

The messages are ``Embedding`` messages (one RoI each: vector code, box, class, confidence,
track id, timestamps), batched as an edge batches them (<= 60,000 bytes per data-channel
message). Their vectors are a clustered synthetic distribution (a Gaussian mixture on a
low-rank subspace plus noise, unit-normalised), stated in the output.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import click
import numpy as np

from cloud.app import build_services
from cloud.config import load_config
from cloud.ingest import LiveSession, pipelined
from shared.codec import encode
from shared.framing import pack_batch
from shared.geometry import Box
from shared.messages import CameraInfo, CodecRef, Embedding, EmitReason, Envelope, Hello
from shared.synthetic import ClusteredSpec, clustered_embeddings, describe
from shared.vectors import VectorCodec, create_codec, fingerprint

BATCH_BYTES = 60_000


def _edge_stream(
    edge: str, n: int, codec: VectorCodec, vectors: np.ndarray, rng: np.random.Generator
) -> tuple[bytes, list[bytes]]:
    hello = Hello(
        "bench",
        "yolo11n",
        "vit_bench",
        codec.dim,
        (CodecRef(codec.codec_id, codec.content_hash),),
        tuple(CameraInfo(f"cam-{c}", 1920, 1080, 25.0) for c in range(4)),
        False,
    )
    t0 = 1_700_000_000_000_000
    codes = codec.encode(vectors)
    fp = fingerprint(codec)
    frames = []
    for i in range(n):
        x, y = rng.uniform(0, 0.8, 2)
        msg = Embedding(
            f"cam-{(i // 8) % 4}",
            1 + i // 8,
            EmitReason.DRIFT if i % 8 else EmitReason.FIRST_SIGHT,
            int(rng.integers(0, 8)),
            float(rng.uniform(0.3, 1.0)),
            Box(x, y, x + 0.1, y + 0.15),
            fp,
            codes[i].tobytes(),
        )
        ts = t0 + i * 40_000
        frames.append(encode(Envelope(edge, i + 1, ts, ts, msg)))
    batches: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for f in frames:
        if size + len(f) + 8 > BATCH_BYTES and current:
            batches.append(pack_batch(current))
            current, size = [], 0
        current.append(f)
        size += len(f) + 8
    if current:
        batches.append(pack_batch(current))
    return encode(Envelope(edge, 0, t0, t0, hello)), batches


async def _feed(live: LiveSession, hello: bytes, batches: list[bytes]) -> None:
    """One edge's connection, served as the transports serve it (``pipelined``)."""
    messages = iter([hello, *batches])

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
    streams = [
        _edge_stream(
            f"edge-{e}", per_edge, codec, clustered_embeddings(per_edge, spec, seed + e), rng
        )
        for e in range(edges)
    ]
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


@click.command()
@click.option("--n", "n", default=200_000, show_default=True, help="RoI messages in all.")
@click.option("--dim", default=384, show_default=True, help="Embedding dimension.")
@click.option("--codec", "codec_spec", default="int8", show_default=True, help="f32/f16/int8.")
@click.option("--edges", default=4, show_default=True, help="Concurrent edge sessions.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(n: int, dim: int, codec_spec: str, edges: int, seed: int, as_json: bool) -> None:
    """Ingest throughput: encoded RoI messages -> committed (SQLite) and indexed (faiss)."""
    if n < edges:
        raise click.BadParameter("need at least one message per edge", param_hint="--n")
    with tempfile.TemporaryDirectory(prefix="semcom-bench-ingest-") as tmp:
        report = run(n, dim, codec_spec, edges, seed, Path(tmp))
    if as_json:
        click.echo(json.dumps(report))
        return
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
