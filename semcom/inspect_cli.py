"""``semcom inspect``: what a recorded message file holds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import click

from shared.codec import decode
from shared.errors import DecodeError
from shared.framing import read_frames
from shared.messages import Hello


@click.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(path: Path, as_json: bool) -> None:
    """Summarise a message file written by `semcom edge run --out`: sessions, types, bytes."""
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    hellos: list[dict[str, Any]] = []
    seqs: list[int] = []
    first_ts = last_ts = None
    error = None
    with open(path, "rb") as fh:
        try:
            for frame in read_frames(fh):
                env = decode(frame)
                name = type(env.message).__name__
                counts[name] += 1
                sizes[name] += len(frame)
                if env.seq:
                    seqs.append(env.seq)
                first_ts = (
                    env.capture_ts_us if first_ts is None else min(first_ts, env.capture_ts_us)
                )
                last_ts = env.capture_ts_us if last_ts is None else max(last_ts, env.capture_ts_us)
                if isinstance(env.message, Hello):
                    m = env.message
                    hellos.append(
                        {
                            "edge_id": env.edge_id,
                            "software": m.software_version,
                            "detector": m.detector,
                            "encoder": m.encoder,
                            "dim": m.embedding_dim,
                            "random_init_encoder": m.random_init_encoder,
                            "codecs": [c.codec_id for c in m.codecs],
                            "cameras": [c.camera for c in m.cameras],
                        }
                    )
        except DecodeError as exc:
            error = str(exc)
    doc = {
        "path": str(path),
        "messages": sum(counts.values()),
        "bytes": sum(sizes.values()),
        "by_type": dict(counts),
        "bytes_by_type": dict(sizes),
        "seq_first": min(seqs) if seqs else None,
        "seq_last": max(seqs) if seqs else None,
        "duplicate_seqs": len(seqs) - len(set(seqs)),
        "span_s": round((last_ts - first_ts) / 1e6, 3)
        if first_ts is not None and last_ts is not None
        else 0.0,
        "sessions": hellos,
        "damaged_tail": error,
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    for key, value in doc.items():
        click.echo(f"{key:16} {value}")
    if any(h["random_init_encoder"] for h in hellos):
        click.echo("NOTE: recorded with a RANDOM-INIT encoder: embeddings carry no meaning")
