"""``semcom bench link``: the uplink under a budget, with real edge and cloud processes.

One run on loopback:

1. fit a PQ codebook on synthetic embeddings (the ladder's last rung) in a temporary folder;
2. start ``semcom cloud serve`` (SQLite journal) and ``semcom edge replay --synthetic`` (a
   synthetic traffic scene whose offered load exceeds the budget at the richest codec), with
   ``--max-rate RATE`` and the ladder ``f16, int8, pq``; WebRTC on 127.0.0.1;
3. when the edge has drained its spool and exited, read the cloud's journal.

Figures: ``goodput_bps`` is the bytes of frames the cloud stored after its first commit, over
the time from that commit to the last (the first commit's bytes were sent before the window
opens: counting them too overstated a paced link by one batch per run, ~2 % at 64 kbit/s over
15 s); ``utilization`` that over the budget; latency is capture (message made) to
commit in the cloud's journal, for messages made once the controller adapted (``latency_ms``,
from ``adapted_after_s`` on) and for all (``latency_ms_all``); ``lost`` = made - stored,
``duplicated`` = stored messages whose content was already stored under another seq.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from shared.codec import decode
from shared.synthetic import ClusteredSpec, clustered_embeddings

TOKEN = "bench-token"


def _start_cloud(workdir: Path, codebook: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = open(workdir / "cloud.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "semcom",
            "cloud",
            "serve",
            "--port",
            "0",
            "--db",
            f"sqlite:///{workdir / 'cloud.db'}",
            "--edge",
            f"bench={TOKEN}",
            "--codebook",
            str(codebook),
            "--ice-host-address",
            "127.0.0.1",
        ],
        stderr=log,
        cwd=workdir,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = (workdir / "cloud.log").read_text(errors="replace")
        for line in text.splitlines():
            if "listening on" in line:
                return proc, line.rsplit(" ", 1)[-1]
        if proc.poll() is not None:
            raise click.ClickException(f"the cloud did not start:\n{text}")
        time.sleep(0.1)
    proc.kill()
    raise click.ClickException("the cloud did not start within 60 s")


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    a = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(a, q)), 1) for q in (50, 95, 99)}


def _journal(db: Path) -> list[tuple[int, int, int, bytes]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT seq, capture_ts_us, received_us, frame FROM journal_frames "
            "WHERE edge_id = 'bench' ORDER BY received_us, seq"
        ).fetchall()
    return [(int(a), int(b), int(c), bytes(d)) for a, b, c, d in rows]


def run_link_bench(
    rate_bps: float,
    seconds: float,
    tracks_per_s: float,
    update_s: float,
    workdir: Path,
    transport: str,
) -> dict[str, Any]:
    from shared.pq import fit_pq

    sample = clustered_embeddings(6000, ClusteredSpec(768), seed=1)
    codebook = workdir / "pq32.npz"
    fit_pq(sample, m=32, seed=0).save(codebook)
    cloud, url = _start_cloud(workdir, codebook)
    report_path = workdir / "edge.json"
    try:
        cmd = [
            sys.executable,
            "-m",
            "semcom",
            "edge",
            "replay",
            "--synthetic",
            "--seconds",
            str(seconds),
            "--tracks-per-s",
            str(tracks_per_s),
            "--update-s",
            str(update_s),
            "--cloud",
            url,
            "--edge-id",
            "bench",
            "--max-rate",
            str(rate_bps),
            "--ladder",
            f"f16,int8,{codebook}",
            "--spool",
            str(workdir / "spool.db"),
            "--transport",
            transport,
            "--ice-host-address",
            "127.0.0.1",
            "--drain-timeout",
            "60",
            "--report",
            str(report_path),
        ]
        env = {**os.environ, "SEMCOM_EDGE__UPLINK__TOKEN": TOKEN}
        edge = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, timeout=seconds + 180)
        if edge.returncode != 0:
            raise click.ClickException(f"the edge failed:\n{edge.stderr.decode()[-3000:]}")
    finally:
        cloud.send_signal(signal.SIGTERM)
        try:
            cloud.wait(timeout=20)
        except subprocess.TimeoutExpired:
            cloud.kill()
    report = json.loads(report_path.read_text())
    rows = _journal(workdir / "cloud.db")
    made = sum(report["messages"].values())
    seen: set[tuple[int, bytes]] = set()
    duplicated = 0
    latencies: list[tuple[int, float]] = []
    for _seq, capture, received, frame in rows:
        envelope = decode(frame)
        key = (envelope.capture_ts_us, repr(envelope.message).encode())
        if key in seen:
            duplicated += 1
        seen.add(key)
        latencies.append((capture, (received - capture) / 1e3))
    uplink = report["uplink"]
    steps = uplink["codec_steps"]
    adapted_after = float(steps[0]["t_s"]) + 3.0 if steps else 0.0
    start_us = int(report["started_us"])
    adapted = [ms for capture, ms in latencies if capture >= start_us + adapted_after * 1e6]
    # arrivals at t_1 .. t_n: the bytes of commits 2 .. n arrived during (t_1, t_n]
    first_us = rows[0][2] if rows else 0
    later_bytes = sum(len(r[3]) for r in rows if r[2] > first_us)
    span_s = (rows[-1][2] - first_us) / 1e6 if rows else 0.0
    goodput = later_bytes * 8 / span_s if span_s > 0 else 0.0
    return {
        "benchmark": "link",
        "transport": transport,
        "rate_bps": rate_bps,
        "seconds": seconds,
        "stream": (
            f"synthetic traffic scene (not real embeddings): {tracks_per_s:g} road users/s for "
            f"10 s each, an embedding each {update_s:g} s, 768-d, counts at 10 Hz, boxes at 2 Hz"
        ),
        "ladder": ["f16", "int8", "pq32x8 (fitted on synthetic vectors)"],
        "offered_bytes": report["bytes"],
        "goodput_bps": round(goodput, 1),
        "utilization": round(goodput / rate_bps, 4),
        "latency_ms": _percentiles(adapted),
        "latency_ms_all": _percentiles([ms for _, ms in latencies]),
        "adapted_after_s": round(adapted_after, 2),
        "sent": made - int(report["refused"]),
        "acked": uplink["acked_frames"],
        "stored": len(rows),
        "lost": made - len(rows),
        "duplicated": duplicated,
        "refused_by_full_spool": report["refused"],
        "left_in_spool": report["left_in_spool"],
        "reconnects": uplink["connects"] - 1,
        "codec_steps": steps,
        "edge_elapsed_s": report["elapsed_s"],
    }


@click.command()
@click.option("--rate", default="256kbit", show_default=True, help="Uplink budget.")
@click.option("--seconds", type=float, default=30.0, show_default=True, help="Stream length.")
@click.option(
    "--tracks-per-s",
    type=float,
    default=4.0,
    show_default=True,
    help="Road users arriving per second (each stays 10 s).",
)
@click.option("--update-s", type=float, default=1.0, show_default=True)
@click.option("--transport", type=click.Choice(["webrtc", "websocket"]), default="webrtc")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the run's files here."
)
def command(
    rate: str,
    seconds: float,
    tracks_per_s: float,
    update_s: float,
    transport: str,
    as_json: bool,
    keep: Path | None,
) -> None:
    """Goodput, latency and loss of the uplink at a budget (real processes, loopback)."""
    from edge.config import parse_rate

    try:
        rate_bps = parse_rate(rate)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rate") from None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        result = run_link_bench(rate_bps, seconds, tracks_per_s, update_s, keep, transport)
    else:
        with tempfile.TemporaryDirectory(prefix="semcom-link-") as tmp:
            result = run_link_bench(rate_bps, seconds, tracks_per_s, update_s, Path(tmp), transport)
    if as_json:
        click.echo(json.dumps(result))
        return
    for key, value in result.items():
        click.echo(f"{key:>24}: {value}")
