"""The ``semcom`` command: one entry point, sub-commands loaded on demand."""

from __future__ import annotations

import logging
import sys

import click

from semcom import software_version
from semcom.lazy import LazyGroup

COMMANDS = {
    "edge": "edge.cli:edge",
    "cloud": "semcom.cloud_cli:cloud",
    "bench": "semcom.bench:bench",
    "codec": "semcom.codec_cli:codec",
    "inspect": "semcom.inspect_cli:inspect",
    "eval": "semcom.eval_cli:eval_",
    "demo": "semcom.demo:command",
    "sim": "semcom.sim_cli:sim",
    "models": "semcom.models_cli:models",
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(software_version(), prog_name="semcom")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    envvar="SEMCOM_LOG_LEVEL",
    help="Verbosity of the log on stderr.",
)
def cli(log_level: str) -> None:
    """semcom: traffic cameras that send vectors, not pixels.

    The edge detects and tracks road users, embeds each region of interest with a Vision
    Transformer and sends compact codes; the cloud indexes, rebuilds and describes them.
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if log_level.lower() != "debug":  # per-candidate ICE and per-request HTTP chatter
        for name in ("aioice", "aiortc", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main() -> None:
    cli(prog_name="semcom")
