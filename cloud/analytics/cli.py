"""``semcom cloud scene``: set and show a camera's analytics scene from a YAML file.

Like ``reindex`` and ``prune`` these commands open the catalog directly (the config's
``database``, or ``--database``), so they work with the cloud running or not: a running cloud's
analytics runner takes a new scene at its next pass. A camera is named by its id (as in the
API) or as ``EDGE/NAME``. Everything heavy is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def _engine(config_path: Path | None, database: str | None) -> Engine:
    from cloud.config import ConfigError, load_config
    from cloud.db import DatabaseError, open_database

    try:
        config = load_config(config_path, {"database": database})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    assert config.database is not None
    try:
        return open_database(config.database)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None


def _camera(engine: Engine, text: str) -> tuple[int, str]:
    """(id, EDGE/NAME) of the camera ``text`` names."""
    from sqlalchemy import select

    from cloud.schema import cameras

    c = cameras.c
    query = select(c.id, c.edge_id, c.name)
    if text.isdigit():
        query = query.where(c.id == int(text))
    else:
        edge, sep, name = text.partition("/")
        if not sep:
            raise click.BadParameter(
                f"{text!r}: give a camera id or EDGE/NAME", param_hint="--camera"
            )
        query = query.where(c.edge_id == edge, c.name == name)
    with engine.connect() as conn:
        row = conn.execute(query).first()
        if row is None:
            known = [f"{i} ({e}/{n})" for i, e, n in conn.execute(select(c.id, c.edge_id, c.name))]
            raise click.ClickException(
                f"no camera {text!r} in the catalog; cameras: {', '.join(known) or 'none yet'}"
            )
    return int(row.id), f"{row.edge_id}/{row.name}"


_config = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Cloud config file (for its database).",
)
_database = click.option("--database", "--db", help="SQLAlchemy URL (default: the config's).")
_camera_option = click.option(
    "--camera", required=True, help="The camera: its id (GET /v1/cameras) or EDGE/NAME."
)


@click.group()
def scene() -> None:
    """A camera's analytics scene: counting lines, zones, calibration."""


@scene.command("set")
@_config
@_database
@_camera_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def set_scene(config_path: Path | None, database: str | None, camera: str, file: Path) -> None:
    """Make FILE (YAML or JSON, see deploy/scenes/README.md) the camera's scene."""
    import time

    from cloud.analytics.scene import SceneError, load_scene
    from cloud.analytics.scenes import InvalidScene, put_scene, validate_scene

    try:
        loaded = validate_scene(load_scene(file).model_dump(mode="json"))
    except (SceneError, InvalidScene) as exc:
        raise click.ClickException(str(exc)) from None
    engine = _engine(config_path, database)
    try:
        camera_id, label = _camera(engine, camera)
        stored, changed = put_scene(engine, camera_id, loaded, time.time_ns() // 1000)
    finally:
        engine.dispose()
    what = "set" if changed else "unchanged (the camera has it already)"
    click.echo(f"camera {camera_id} ({label}): scene {stored.version} {what}")


@scene.command("show")
@_config
@_database
@_camera_option
@click.option("--history", is_flag=True, help="List every scene the camera had instead.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML.")
def show_scene(
    config_path: Path | None, database: str | None, camera: str, history: bool, as_json: bool
) -> None:
    """Print the camera's current scene (as stored: defaults filled in)."""
    from datetime import datetime, timezone

    import yaml

    from cloud.analytics.scenes import current_scene, scene_history

    def when(us: int) -> str:
        return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat(timespec="seconds")

    engine = _engine(config_path, database)
    try:
        camera_id, label = _camera(engine, camera)
        with engine.connect() as conn:
            rows = scene_history(conn, camera_id, 1000) if history else []
            found = None if history else current_scene(conn, camera_id)
    finally:
        engine.dispose()
    if history:
        items = [{"version": s.version, "set": when(s.created_us)} for s in rows]
        if as_json:
            click.echo(json.dumps(items, indent=2))
        else:
            for item in items:
                click.echo(f"{item['version']}  {item['set']}")
        return
    if found is None:
        raise click.ClickException(f"camera {camera_id} ({label}) has no scene")
    if as_json:
        click.echo(json.dumps(found.body, indent=2))
        return
    body: dict[str, Any] = found.body
    click.echo(
        f"# camera {camera_id} ({label}), scene {found.version}, set {when(found.created_us)}"
    )
    click.echo(yaml.safe_dump(body, sort_keys=False), nl=False)


@scene.command("reprocess")
@_config
@_database
@_camera_option
@click.option("--since", help="Only tracks changed since this time (ISO 8601 or Unix seconds).")
def reprocess(
    config_path: Path | None, database: str | None, camera: str, since: str | None
) -> None:
    """Analyse the camera's tracks again (never before its first scene): stored events stay,
    missing ones are added; a running cloud does it at its next pass."""
    import time

    from cloud.analytics.store import save_watermark
    from cloud.api.params import parse_time_us

    try:
        since_us = 0 if since is None else parse_time_us(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    engine = _engine(config_path, database)
    try:
        camera_id, label = _camera(engine, camera)
        with engine.begin() as conn:
            save_watermark(conn, camera_id, since_us, time.time_ns() // 1000)
    finally:
        engine.dispose()
    click.echo(f"camera {camera_id} ({label}): tracks will be analysed again")
