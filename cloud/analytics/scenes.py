"""Scenes in the catalog: each camera's current scene (its newest row) and their history.

A scene is validated (:func:`validate_scene`: every problem named by its field) and stored
normalised (defaults filled in, as :meth:`Scene.model_dump` gives it) with its content version.
Setting the scene a camera already has changes nothing; any other scene becomes a new row and
the camera's current scene from then on (see :mod:`cloud.analytics.runner` for what that means
for tracks in progress). Rows are never deleted: events name the version that made them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import Connection, func, select
from sqlalchemy.engine import Engine

from cloud.analytics.scene import Scene
from cloud.schema import cameras, scenes

MAX_LINES: Final = 64
MAX_ZONES: Final = 64


Loc = tuple[int | str, ...]


class InvalidScene(ValueError):
    """A scene that does not validate: ``problems`` are (location, message) pairs, the
    location a path of keys and indexes such as ``("lines", "entry", "points", 1, 0)`` (empty:
    the whole scene); the message names each as ``lines.entry.points[1][0]``."""

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems = list(problems)
        super().__init__(
            "invalid scene: "
            + "; ".join(f"{where(loc) or '(scene)'}: {msg}" for loc, msg in self.problems)
        )


class UnknownCamera(LookupError):
    """No camera with that id in the catalog."""


@dataclass(frozen=True)
class StoredScene:
    id: int
    camera_id: int
    version: str
    body: dict[str, Any]
    created_us: int

    def scene(self) -> Scene:
        """The validated scene (raises :class:`InvalidScene` for a row this code rejects)."""
        return validate_scene(self.body)


def where(loc: Sequence[int | str]) -> str:
    """``("lines", "a", "points", 1)`` -> ``lines.a.points[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_scene(data: Any) -> Scene:
    """A :class:`Scene` from plain data (a JSON object or parsed YAML)."""
    if not isinstance(data, Mapping):
        raise InvalidScene([((), "a scene is a JSON object (a mapping)")])
    try:
        scene = Scene.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            ctx = err.get("ctx") or {}
            custom = err["type"] == "value_error" and "error" in ctx
            msg = str(ctx["error"]) if custom else str(err["msg"])
            problems.append((tuple(err["loc"]), msg))
        raise InvalidScene(problems) from None
    too_many: list[tuple[Loc, str]] = [
        ((name,), f"at most {limit} per scene ({len(items)} given)")
        for name, items, limit in (
            ("lines", scene.lines, MAX_LINES),
            ("zones", scene.zones, MAX_ZONES),
        )
        if len(items) > limit
    ]
    if too_many:
        raise InvalidScene(too_many)
    return scene


def _stored(row: Any) -> StoredScene:
    return StoredScene(
        id=int(row.id),
        camera_id=int(row.camera_id),
        version=str(row.version),
        body=dict(row.body),
        created_us=int(row.created_us),
    )


def camera_exists(conn: Connection, camera_id: int) -> bool:
    return conn.execute(select(cameras.c.id).where(cameras.c.id == camera_id)).first() is not None


def current_scene(conn: Connection, camera_id: int) -> StoredScene | None:
    row = conn.execute(
        select(scenes).where(scenes.c.camera_id == camera_id).order_by(scenes.c.id.desc()).limit(1)
    ).first()
    return _stored(row) if row is not None else None


def current_scenes(conn: Connection) -> dict[int, StoredScene]:
    """Every camera's current scene, by camera id."""
    newest = select(func.max(scenes.c.id)).group_by(scenes.c.camera_id)
    rows = conn.execute(select(scenes).where(scenes.c.id.in_(newest)).order_by(scenes.c.camera_id))
    return {int(r.camera_id): _stored(r) for r in rows}


def scene_history(
    conn: Connection, camera_id: int, limit: int, before_id: int | None = None
) -> list[StoredScene]:
    """The camera's scenes, newest first (``before_id``: those older than that row)."""
    query = select(scenes).where(scenes.c.camera_id == camera_id)
    if before_id is not None:
        query = query.where(scenes.c.id < before_id)
    rows = conn.execute(query.order_by(scenes.c.id.desc()).limit(limit))
    return [_stored(r) for r in rows]


def scene_version(conn: Connection, camera_id: int, version: str) -> StoredScene | None:
    """A scene of the camera with this version (its newest row)."""
    row = conn.execute(
        select(scenes)
        .where(scenes.c.camera_id == camera_id, scenes.c.version == version)
        .order_by(scenes.c.id.desc())
        .limit(1)
    ).first()
    return _stored(row) if row is not None else None


def first_scene_us(conn: Connection, camera_id: int) -> int | None:
    """When the camera got its first scene (analytics begin there)."""
    found = conn.execute(
        select(func.min(scenes.c.created_us)).where(scenes.c.camera_id == camera_id)
    ).scalar()
    return None if found is None else int(found)


def subjects(conn: Connection, camera_id: int) -> tuple[set[str], set[str]]:
    """Names of the lines and of the zones in any scene the camera ever had."""
    lines: set[str] = set()
    zones: set[str] = set()
    for (body,) in conn.execute(select(scenes.c.body).where(scenes.c.camera_id == camera_id)):
        if isinstance(body, dict):
            lines.update(body.get("lines") or ())
            zones.update(body.get("zones") or ())
    return lines, zones


def put_scene(
    engine: Engine, camera_id: int, scene: Scene, now_us: int
) -> tuple[StoredScene, bool]:
    """Make ``scene`` the camera's current scene; returns it and whether it is new (False:
    the camera had this version already). :class:`UnknownCamera` for a camera not in the
    catalog."""
    with engine.begin() as conn:
        if not camera_exists(conn, camera_id):
            raise UnknownCamera(f"no camera with id {camera_id}")
        current = current_scene(conn, camera_id)
        if current is not None and current.version == scene.version:
            return current, False
        body = scene.model_dump(mode="json")
        new_id = conn.execute(
            scenes.insert()
            .values(camera_id=camera_id, version=scene.version, body=body, created_us=now_us)
            .returning(scenes.c.id)
        ).scalar_one()
    return StoredScene(int(new_id), camera_id, scene.version, body, now_us), True
