"""``semcom bench``: benchmark commands; each prints a table, or one JSON object with --json."""

from __future__ import annotations

import click

from semcom.lazy import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy={
        "codec": "semcom.bench.codec:command",
        "dashboard": "semcom.bench.dashboard:command",
        "edge": "semcom.bench.edge:command",
        "faults": "semcom.bench.faults:command",
        "fidelity": "semcom.bench.fidelity:command",
        "index": "semcom.bench.index:command",
        "ingest": "semcom.bench.ingest:command",
        "link": "semcom.bench.link:command",
        "load": "semcom.bench.load:command",
    },
)
def bench() -> None:
    """Measure sizes and speeds (figures come from this run, on this machine)."""
