"""``semcom cloud``: run the cloud service, make edge tokens, set analytics scenes."""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cloud.alerts import cli as alerts_cli
from cloud.analytics.cli import scene
from shared.logformat import LOG_FORMATS, LogFormat, console_line, use_log_format

if TYPE_CHECKING:
    from cloud.config import CloudConfig

logger = logging.getLogger(__name__)


@click.group()
def cloud() -> None:
    """The cloud service: receives, stores and serves what edges send."""


cloud.add_command(scene)


def _parse_pairs(values: tuple[str, ...], hint: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, token = value.partition("=")
        if not sep or not name or not token:
            raise click.BadParameter(f"{value!r}: use NAME=TOKEN", param_hint=hint)
        pairs[name] = token
    return pairs


_config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML config file (flags and SEMCOM_CLOUD__* env win).",
)


def _load(config_path: Path | None, overrides: dict[str, Any]) -> CloudConfig:
    from cloud.config import ConfigError, load_config

    try:
        return load_config(config_path, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@cloud.command()
@_config_option
@click.option("--host", help="Address to listen on.")
@click.option("--port", type=int, help="TCP port (0: any free port; the log line says which).")
@click.option("--database", "--db", help="SQLAlchemy URL (default: SQLite in the data directory).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the index (and default catalog); default ./semcom-data.",
)
@click.option(
    "--edge",
    "edges",
    multiple=True,
    help="Allow an edge: EDGE_ID=TOKEN (repeatable; adds to the config file's edges).",
)
@click.option(
    "--api-token",
    "api_tokens",
    multiple=True,
    help="Allow an API client: NAME=TOKEN (repeatable; adds to the config's api_tokens).",
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
@click.option(
    "--decoder",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Crop decoder checkpoint (semcom cloud train-decoder): GET /v1/detections/{id}/image.",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    envvar="SEMCOM_LOG_FORMAT",
    help="Log lines on stderr as text or as JSON objects, one a line [env: SEMCOM_LOG_FORMAT].",
)
def serve(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    database: str | None,
    data_dir: Path | None,
    edges: tuple[str, ...],
    api_tokens: tuple[str, ...],
    codebooks: tuple[Path, ...],
    ice_hosts: tuple[str, ...],
    decoder: Path | None,
    log_format: LogFormat,
) -> None:
    """Serve signaling, ingest and the API until SIGINT/SIGTERM."""
    import uvicorn

    use_log_format(log_format)

    from cloud.app import create_app
    from cloud.clip_encoder import query_encoders
    from cloud.heap import limit_arenas

    limit_arenas()  # before the threads start (see cloud/heap.py)
    from cloud.config import ConfigError, with_tokens
    from cloud.encoder import EncoderError

    overrides: dict[str, Any] = {"host": host, "port": port, "database": database}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    if codebooks:
        overrides["codebooks.files"] = [str(p) for p in codebooks]
    if ice_hosts:
        overrides["ice_host_addresses"] = list(ice_hosts)
    if decoder is not None:
        overrides["decoder.checkpoint"] = str(decoder)
    config = _load(config_path, overrides)
    try:
        config = with_tokens(
            config, _parse_pairs(edges, "--edge"), _parse_pairs(api_tokens, "--api-token")
        )
        image_encoder, text_encoder = query_encoders(config.encoder)
        app = create_app(config, image_encoder, text_encoder)
    except (ConfigError, EncoderError, click.BadParameter) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # codebooks, database URL
        raise click.ClickException(f"cannot start: {exc}") from None
    if not config.edges:
        logger.warning("no edges configured: every session request will be refused (403)")
    if not config.api_tokens:
        logger.warning("no api_tokens configured: every API query will be refused (401/403)")
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
        # Listen now: connections made once the line below is out wait in the backlog while
        # the app starts (index catch-up, models) instead of being refused.
        sock.listen(2048)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {config.host}:{config.port}: {exc}") from None
    scheme = "https" if config.tls else "http"
    bound = sock.getsockname()[1]
    say = partial(console_line, fmt=log_format, source="cloud.serve")
    click.echo(say(f"semcom cloud listening on {scheme}://{config.host}:{bound}"), err=True)
    who = "an API token" if config.api_tokens else "an API token (none configured: add api_tokens)"
    click.echo(
        say(f"semcom cloud dashboard at {scheme}://{config.host}:{bound}/ (sign in with {who})"),
        err=True,
    )
    sys.stderr.flush()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            ssl_certfile=str(config.tls.certfile) if config.tls else None,
            ssl_keyfile=str(config.tls.keyfile) if config.tls else None,
            ws="websockets-sansio",
            ws_max_size=config.ws_max_message_bytes,  # refused before it is read whole
            lifespan="on",
            # JSON: uvicorn's loggers go through the root logger's JSON lines
            log_config=None if log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        )
    )
    server.run(sockets=[sock])


cloud.add_command(alerts_cli.alerts)


@cloud.command()
@click.argument("name")
@click.option("--api", is_flag=True, help="A token for an API client instead of an edge.")
def token(name: str, api: bool) -> None:
    """Make a new random token for edge NAME (or API client NAME with --api).

    Prints the cloud config entry (only the hash) and how the other side uses the token.
    """
    value = secrets.token_urlsafe(32)
    digest = hashlib.sha256(value.encode()).hexdigest()
    section = "api_tokens" if api else "edges"
    click.echo(
        f"# cloud config (keeps only the hash):\n{section}:\n  {name}:\n    token_sha256: {digest}"
    )
    if api:
        click.echo(f"# client: Authorization: Bearer {value}")
    else:
        click.echo(f"# edge: export SEMCOM_EDGE__UPLINK__TOKEN={value}")


@cloud.command()
@_config_option
@click.option("--database", "--db", help="SQLAlchemy URL (default: the config's).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))
def reindex(config_path: Path | None, database: str | None, data_dir: Path | None) -> None:
    """Rebuild every vector index from the catalog's stored embeddings (cloud stopped)."""
    from cloud.app import build_services
    from cloud.indexer import rebuild

    overrides: dict[str, Any] = {"database": database}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    config = _load(config_path, overrides)
    try:
        services = build_services(config)
    except Exception as exc:
        raise click.ClickException(f"cannot open the catalog: {exc}") from None
    total = services.indexer.stored_embeddings()
    with click.progressbar(length=total, label="indexing", file=sys.stderr) as bar:
        added = rebuild(services.indexer, bar.update)
    spaces = services.indexer.describe()["spaces"]
    services.indexer.stop()  # saves
    skipped = services.indexer.skipped_undecodable
    click.echo(f"indexed {added} embeddings" + (f", {skipped} undecodable" if skipped else ""))
    for space, info in spaces.items():  # type: ignore[attr-defined]
        click.echo(f"  {space}: {info}")


@cloud.command()
@_config_option
@click.option("--database", "--db", help="SQLAlchemy URL (default: the config's).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--older-than", help="Age to keep (e.g. 30d); default: the config's retention.")
def prune(
    config_path: Path | None, database: str | None, data_dir: Path | None, older_than: str | None
) -> None:
    """Apply retention once: delete catalog rows and vectors older than the age."""
    from cloud.app import build_services

    overrides: dict[str, Any] = {"database": database, "retention": older_than}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    config = _load(config_path, overrides)
    if config.retention is None:
        raise click.ClickException("no age: give --older-than or set retention in the config")
    services = build_services(config)
    assert services.retention is not None
    services.indexer.catch_up()
    removed = services.retention.run_once()
    services.indexer.stop()
    click.echo(", ".join(f"{table}: {n}" for table, n in removed.items()))
