"""The cloud's database: an engine for a URL, brought to the current schema by Alembic.

SQLite (the embedded default) runs in WAL mode, so API readers never block the ingest writer,
with ``synchronous=FULL`` (an acknowledged frame survives power loss) and a busy timeout.
PostgreSQL is chosen by URL (``postgresql+psycopg://user:pass@host/db``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DatabaseError(Exception):
    """The database URL is unusable or the schema cannot be brought up to date."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, connect_timeout_s: int = 10) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created when missing.

    A server database that does not answer fails after ``connect_timeout_s`` (libpq's
    ``connect_timeout``; a ``connect_timeout`` in the URL wins) instead of hanging the
    service's start or a request.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"invalid database URL {url!r}: {exc}") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": connect_timeout_s}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise DatabaseError(f"no driver for {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (a signed 64-bit integer) for a lock ``name``: the same
    on every replica, and unlikely to meet another application's keys."""
    digest = hashlib.blake2b(f"semcom:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """PostgreSQL: one replica at a time brings the schema up to date (a session advisory
    lock on a connection of its own, freed at once if the process dies). Replicas started
    together on a new database otherwise hung, each creating tables in its own transaction
    and waiting on the others'. SQLite: one process owns the file; nothing to take."""
    if engine.dialect.name != "postgresql":
        yield
        return
    key = advisory_key("migrations")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def upgrade(engine: Engine) -> None:
    """Apply every pending migration (a new database gets the whole schema)."""
    try:
        with migration_lock(engine):
            command.upgrade(alembic_config(engine), "head")
    except Exception as exc:  # driver errors differ per backend; the URL is what users fix
        raise DatabaseError(
            f"cannot prepare the database {engine.url.render_as_string(hide_password=True)}: {exc}"
        ) from exc


def open_database(url: str) -> Engine:
    """Engine for ``url`` with the schema up to date."""
    engine = make_engine(url)
    upgrade(engine)
    return engine
