"""The load generator of ``semcom bench ingest``: N edge sessions in one process, real protocol.

The benchmark runs it as a process of its own (``python -m semcom.bench.ingest_client PLAN
OUT``), beside the cloud process(es), so that what the cloud spends and what the senders spend
are measured apart. It is not N edges (no camera, detector or spool file): per edge it holds
the encoded frames an edge's spool would hold (encoded before the clock starts, as an edge's
spool holds frames encoded when they were made) and sends them as the edge's uplink does
(:mod:`semcom.bench.ingest_sender`), all sessions on one event loop.

The clock starts when every session is connected (Hello answered); it stops when every frame
is acknowledged (or ``deadline_s`` passed). CPU seconds of this process and of the watched
processes (the cloud, its database: each with its children) are read at both ends, with the
machine's busy time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from semcom.bench import cpu
from semcom.bench.ingest_sender import EdgePlan, EdgeSender, SenderSettings
from semcom.bench.ingest_stream import edge_stream, vectors
from shared.vectors import create_codec

logger = logging.getLogger(__name__)

#: Sessions connecting at once (WebRTC handshakes are CPU-heavy on a small machine).
CONNECTS_AT_ONCE: Final = 8


@dataclass(frozen=True)
class ClientPlan:
    """What the load generator does; written as JSON by the benchmark."""

    sender: SenderSettings
    edges: list[EdgePlan]
    messages: int  # per edge
    dim: int
    codec: str
    seed: int
    deadline_s: float  # for the whole sending phase
    watch: dict[str, int] = field(default_factory=dict)  # name -> pid (with its children)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientPlan:
        edges = [EdgePlan(**e) for e in data.pop("edges")]
        return cls(sender=SenderSettings(**data.pop("sender")), edges=edges, **data)


def _cpu_snapshot(watch: dict[str, int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"loadgen": time.process_time()}
    out.update({name: cpu.tree_cpu_s(pid) for name, pid in watch.items()})
    return out


def _spent(before: float | None, after: float | None) -> float | None:
    return round(after - before, 3) if before is not None and after is not None else None


async def _connect_all(clients: list[EdgeSender]) -> None:
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def one(client: EdgeSender) -> None:
        async with gate:
            await client.connect()

    await asyncio.gather(*(one(c) for c in clients))


async def drive(plan: ClientPlan) -> dict[str, Any]:
    """Prepare every edge's frames, connect every session, send, and report."""
    started = time.perf_counter()
    codec = create_codec(plan.codec, plan.dim)
    rng = np.random.default_rng(plan.seed)
    every, n = vectors(plan.messages * len(plan.edges), plan.dim, plan.seed), plan.messages
    clients = [
        EdgeSender(
            plan.sender,
            edge,
            edge_stream(edge.edge_id, every[i * n : (i + 1) * n], codec, rng, f"bench{i}"),
            f"bench{i}",
        )
        for i, edge in enumerate(plan.edges)
    ]
    prepare_s = time.perf_counter() - started
    started = time.perf_counter()
    await _connect_all(clients)
    connect_s = time.perf_counter() - started
    go = asyncio.Event()
    runs = [asyncio.ensure_future(c.run(go)) for c in clients]
    machine0, cpu0 = cpu.machine_cpu(), _cpu_snapshot(plan.watch)
    t0_wall, t0 = time.time(), time.perf_counter()
    go.set()
    # every sender ends once its frames are settled; one that fails ends the run at once
    _done, pending = await asyncio.wait(
        runs, timeout=plan.deadline_s, return_when=asyncio.FIRST_EXCEPTION
    )
    failed = any(r.done() and not r.cancelled() and r.exception() is not None for r in runs)
    timed_out = bool(pending) and not failed
    elapsed = time.perf_counter() - t0
    t1_wall, cpu1, machine1 = time.time(), _cpu_snapshot(plan.watch), cpu.machine_cpu()
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    crashed = [repr(r.exception()) for r in runs if not r.cancelled() and r.exception()]
    cpu_s = {k: _spent(cpu0[k], cpu1[k]) for k in cpu0}
    latency: Counter[float] = Counter()
    per_edge = []
    for c in clients:
        latency.update(round(v, 1) for v in c.figures.latency_ms)
        fig = asdict(c.figures)
        fig.pop("latency_ms")
        fig["failures"] = dict(c.figures.failures)
        per_edge.append(fig)
    return {
        "transport": plan.sender.transport,
        "prepare_s": round(prepare_s, 2),
        "connect_s": round(connect_s, 2),
        "t0_wall": t0_wall,
        "t1_wall": t1_wall,
        "send_s": round(elapsed, 3),
        "timed_out": timed_out,
        "crashed": crashed,
        "cpu_s": cpu_s,
        "machine": machine1.since(machine0) if machine0 and machine1 else None,
        "wire_bytes": sum(c.stream.wire_bytes for c in clients),
        "latency_hist": {str(k): v for k, v in latency.items()},
        "per_edge": per_edge,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m semcom.bench.ingest_client PLAN.json OUT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    plan = ClientPlan.from_json(json.loads(Path(args[0]).read_text()))
    result = asyncio.run(drive(plan))
    Path(args[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
