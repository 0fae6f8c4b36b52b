"""``semcom edge spool``: look into an edge's spool, and decide about refused messages.

The spool is found as the edge finds it: ``--spool PATH``, else ``uplink.spool_path`` of
``--config`` (and ``SEMCOM_EDGE__UPLINK__SPOOL_PATH``), else the default
``semcom-spool.db``. The commands never create a spool file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from edge.spool import Spool


def _spool_options(fn: Any) -> Any:
    fn = click.option(
        "--spool",
        "spool_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Spool file [default: the config's uplink.spool_path, else semcom-spool.db].",
    )(fn)
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Edge YAML config whose uplink.spool_path to use (SEMCOM_EDGE__* env wins).",
    )(fn)


def spool_path(config_path: Path | None, spool: Path | None) -> Path:
    """Where the edge keeps its spool, by the edge's own rules."""
    if spool is not None:
        return spool
    from edge.config import ENV_PREFIX, UplinkConfig
    from shared import settings

    try:
        data = settings.layered(config_path, ENV_PREFIX)
    except settings.SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    uplink = data.get("uplink") or {}
    path = uplink.get("spool_path") if isinstance(uplink, dict) else None
    return Path(path) if path else Path(UplinkConfig.model_fields["spool_path"].default)


@contextmanager
def _opened(config_path: Path | None, spool: Path | None) -> Iterator[Spool]:
    from edge.spool import Spool

    path = spool_path(config_path, spool)
    if not path.is_file():
        raise click.ClickException(
            f"no spool file at {path} (give --spool PATH, or --config with uplink.spool_path)"
        )
    opened = Spool(path)
    try:
        yield opened
    finally:
        opened.close()


@click.group("spool")
def spool_group() -> None:
    """An edge's spool: what waits for the cloud, and what the cloud refused (quarantine)."""


@spool_group.command()
@_spool_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(config_path: Path | None, spool_path: Path | None, as_json: bool) -> None:
    """Pending messages by priority and by Hello (encoder), bytes, oldest age, quarantine."""
    from edge.spool_admin import stats as spool_stats

    with _opened(config_path, spool_path) as spool:
        info = spool_stats(spool)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"spool {info['path']} (incarnation {info['incarnation']})")
    click.echo(
        f"pending: {info['pending']} messages, {info['pending_bytes']} bytes, oldest "
        f"{info['oldest_age_s']} s; next seq {info['next_seq']}"
    )
    for name, count in info["by_priority"].items():
        click.echo(f"  {name}: {count}")
    for group in info["by_hello"]:
        what = group.get("note") or (
            f"encoder {group['encoder']} ({group['embedding_dim']}d), codecs "
            f"{','.join(group['codecs'])}, cameras {','.join(group['cameras'])}"
        )
        click.echo(f"  Hello {group['hello']}: {group['pending']} messages; {what}")
    click.echo(f"quarantined: {info['quarantined']} messages, {info['quarantined_bytes']} bytes")


@spool_group.group()
def quarantine() -> None:
    """Messages the cloud refused: kept aside, never sent again unless retried."""


@quarantine.command("list")
@_spool_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(config_path: Path | None, spool_path: Path | None, as_json: bool) -> None:
    """Every quarantined message: seq, type, the cloud's reason and when."""
    from edge.spool_admin import quarantined

    with _opened(config_path, spool_path) as spool:
        items = quarantined(spool)
    if as_json:
        click.echo(json.dumps([item.__dict__ for item in items], indent=2))
        return
    if not items:
        click.echo("the quarantine is empty")
    for item in items:
        when = datetime.fromtimestamp(item.quarantined, timezone.utc).isoformat(timespec="seconds")
        click.echo(f"{item.seq}\t{item.type}\t{when}\t{item.reason}")


def _decide(verb: str, action: Callable[[Spool, list[int] | None], int]) -> Callable[..., None]:
    def command(
        config_path: Path | None, spool_path: Path | None, seqs: tuple[int, ...], all_: bool
    ) -> None:
        if bool(seqs) == all_:
            raise click.UsageError("give SEQ... or --all (not both)")
        from edge.spool_admin import quarantined

        with _opened(config_path, spool_path) as spool:
            missing = sorted(set(seqs) - {item.seq for item in quarantined(spool)})
            done = action(spool, None if all_ else list(seqs))
        if missing:
            click.echo(f"not in the quarantine: {', '.join(map(str, missing))}", err=True)
        click.echo(f"{done} quarantined messages {verb}")

    return command


def _with_seqs(fn: Any) -> Any:
    fn = click.option("--all", "all_", is_flag=True, help="Every quarantined message.")(fn)
    fn = click.argument("seqs", nargs=-1, type=click.IntRange(1))(fn)
    return _spool_options(fn)


def _retry(spool: Spool, seqs: list[int] | None) -> int:
    from edge.spool_admin import retry

    return retry(spool, seqs)


def _drop(spool: Spool, seqs: list[int] | None) -> int:
    from edge.spool_admin import drop

    return drop(spool, seqs)


quarantine.command(
    "retry",
    help="Put quarantined messages back in the queue (under new seqs), e.g. once the cloud's "
    "configuration is fixed.",
)(_with_seqs(_decide("put back in the queue", _retry)))
quarantine.command("drop", help="Delete quarantined messages for good.")(
    _with_seqs(_decide("deleted", _drop))
)
