"""``semcom cloud alerts dead-letters``: list alerts that could not be delivered, replay one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click


@click.group()
def alerts() -> None:
    """Alerts on analytics events (the config's `alerts` section)."""


@alerts.command("dead-letters")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML config file (SEMCOM_CLOUD__* env wins).",
)
@click.option("--database", "--db", help="SQLAlchemy URL (default: the config's).")
@click.option("--pending", is_flag=True, help="Only those not replayed yet.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option(
    "--replay",
    "replay_id",
    type=click.IntRange(1),
    help="Deliver this dead letter again (one attempt) with the config's targets.",
)
def dead_letters(
    config_path: Path | None,
    database: str | None,
    pending: bool,
    limit: int,
    replay_id: int | None,
) -> None:
    """List dead letters, newest first, or replay one (--replay ID)."""
    from cloud.alerts.delivery import DeliveryFailed
    from cloud.alerts.dispatcher import AlertDispatcher, AlertsSetupError, ReplayRefused
    from cloud.alerts.model import iso
    from cloud.alerts.store import AlertStore
    from cloud.config import ConfigError, load_config
    from cloud.db import open_database

    overrides: dict[str, Any] = {"database": database}
    try:
        config = load_config(config_path, overrides)
        engine = open_database(str(config.database))
    except Exception as exc:  # config, database URL
        raise click.ClickException(str(exc)) from None
    try:
        if replay_id is None:
            rows = AlertStore(engine).dead_letters(pending_only=pending, limit=limit)
            if not rows:
                click.echo("no dead letters")
            for row in rows:
                state = f"replayed {iso(row.replayed_us)}" if row.replayed_us else "pending"
                click.echo(
                    f"{row.id}\t{iso(row.created_us)}\trule={row.rule or '-'}\t"
                    f"target={row.target}\tevent={row.event_id}\tattempts={row.attempts}\t"
                    f"{state}\t{row.error}"
                )
            return
        if config.alerts is None:
            raise click.ClickException("no `alerts` section in the config: no targets to replay to")
        from prometheus_client import CollectorRegistry

        try:
            dispatcher = AlertDispatcher(config.alerts, engine, CollectorRegistry())
        except (AlertsSetupError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from None

        async def replay() -> Any:
            try:
                return await dispatcher.replay(replay_id)
            finally:
                await dispatcher.aclose()

        try:
            letter = asyncio.run(replay())
        except ReplayRefused as exc:
            raise click.ClickException(str(exc)) from None
        except DeliveryFailed as exc:
            raise click.ClickException(
                f"dead letter {replay_id}: delivery failed again: {exc.error}"
            ) from None
        if letter is None:
            raise click.ClickException(f"no dead letter {replay_id}")
        click.echo(f"dead letter {replay_id} delivered to {letter.target}")
    finally:
        engine.dispose()
