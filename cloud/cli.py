"""``semcom cloud``: run the cloud service, make edge tokens."""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import click

logger = logging.getLogger(__name__)


@click.group()
def cloud() -> None:
    """The cloud service: receives, stores and serves what edges send."""


def _parse_edges(values: tuple[str, ...]) -> dict[str, str]:
    edges: dict[str, str] = {}
    for value in values:
        edge, sep, token = value.partition("=")
        if not sep or not edge or not token:
            raise click.BadParameter(f"{value!r}: use EDGE_ID=TOKEN", param_hint="--edge")
        edges[edge] = token
    return edges


@cloud.command()
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML config file (flags and SEMCOM_CLOUD__* env win).",
)
@click.option("--host", help="Address to listen on.")
@click.option("--port", type=int, help="TCP port (0: any free port; the log line says which).")
@click.option("--database", "--db", help="SQLAlchemy URL (default sqlite:///semcom-cloud.db).")
@click.option(
    "--edge",
    "edges",
    multiple=True,
    help="Allow an edge: EDGE_ID=TOKEN (repeatable; adds to the config file's edges).",
)
@click.option(
    "--codebook",
    "codebooks",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Codebook (.npz) edges may use (repeatable).",
)
@click.option(
    "--ice-host-address",
    "ice_hosts",
    multiple=True,
    help="Offer ICE candidates only on this address (repeatable; 127.0.0.1 for loopback).",
)
def serve(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    database: str | None,
    edges: tuple[str, ...],
    codebooks: tuple[Path, ...],
    ice_hosts: tuple[str, ...],
) -> None:
    """Serve signaling, ingest and the API until SIGINT/SIGTERM."""
    import uvicorn

    from cloud.app import create_app
    from cloud.config import ConfigError, load_config, with_edges

    overrides: dict[str, Any] = {"host": host, "port": port, "database": database}
    if codebooks:
        overrides["codebooks"] = [str(p) for p in codebooks]
    if ice_hosts:
        overrides["ice_host_addresses"] = list(ice_hosts)
    try:
        config = load_config(config_path, overrides)
        if edges:
            config = with_edges(config, _parse_edges(edges))
        app = create_app(config)
    except (ConfigError, click.BadParameter) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # codebooks, database URL
        raise click.ClickException(f"cannot start: {exc}") from None
    if not config.edges:
        logger.warning("no edges configured: every session request will be refused (403)")
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {config.host}:{config.port}: {exc}") from None
    scheme = "https" if config.tls else "http"
    bound = sock.getsockname()[1]
    click.echo(f"semcom cloud listening on {scheme}://{config.host}:{bound}", err=True)
    sys.stderr.flush()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            ssl_certfile=str(config.tls.certfile) if config.tls else None,
            ssl_keyfile=str(config.tls.keyfile) if config.tls else None,
            ws="websockets-sansio",
            lifespan="on",
        )
    )
    server.run(sockets=[sock])


@cloud.command()
@click.argument("edge_id")
def token(edge_id: str) -> None:
    """Make a new random token for EDGE_ID; prints the config entry and the edge's setting."""
    value = secrets.token_urlsafe(32)
    digest = hashlib.sha256(value.encode()).hexdigest()
    click.echo(
        f"# cloud config (keeps only the hash):\nedges:\n  {edge_id}:\n    token_sha256: {digest}"
    )
    click.echo(f"# edge: export SEMCOM_EDGE__UPLINK__TOKEN={value}")
