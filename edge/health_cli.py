"""Options and output of ``semcom edge run`` and ``replay`` about the edge's health: the local
/metrics and /healthz listener, the log format, the run's figures as a JSON log field."""

from __future__ import annotations

from typing import Any

import click

from shared.logformat import LOG_FORMATS


def health_options(fn: Any) -> Any:
    """``--health-listen`` (the ``health.listen`` override) and ``--log-format``."""
    options = [
        click.option(
            "--health-listen",
            help="Serve /metrics (Prometheus) and /healthz on HOST:PORT, e.g. 127.0.0.1:9108 "
            "(port 0: any free port, logged) [config health.listen; default: off].",
        ),
        click.option(
            "--log-format",
            type=click.Choice(LOG_FORMATS),
            default="text",
            show_default=True,
            envvar="SEMCOM_LOG_FORMAT",
            help="Log lines on stderr as text or as JSON objects, one a line "
            "[env: SEMCOM_LOG_FORMAT].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def run_summary(agent: Any, stats: Any) -> dict[str, Any]:
    """The run's figures for a JSON log line."""
    o, policy = agent.outbox.stats, agent.pipeline.policy.stats
    out = {
        "frames": stats.frames,
        "captured": agent.source.stats.frames,
        "dropped_frames": stats.dropped_frames,
        "skipped_embeddings": stats.skipped_embeddings,
        "elapsed_s": round(stats.elapsed_s, 3),
        "messages": dict(o.messages),
        "bytes": dict(o.bytes),
        "tracks_started": policy.tracks_started,
        "tracks_ended": policy.tracks_ended,
    }
    if agent.uplink is not None:
        link = agent.uplink.uplink.stats
        out["uplink"] = {"acked_frames": link.acked_frames, "connects": link.connects}
    return out
