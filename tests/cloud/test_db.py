"""Opening the catalog database: clear errors, no hang on a server that does not answer."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cloud.db import DatabaseError, make_engine


def test_a_silent_postgresql_server_times_out() -> None:
    pytest.importorskip("psycopg")
    with socket.socket() as silent:  # accepts TCP connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        engine = make_engine(f"postgresql+psycopg://u@127.0.0.1:{port}/db", connect_timeout_s=1)
        started = time.monotonic()
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert time.monotonic() - started < 10
        engine.dispose()


def test_a_bad_url_is_one_clear_error() -> None:
    with pytest.raises(DatabaseError, match="invalid database URL"):
        make_engine("not a url")


@pytest.mark.postgres
def test_replicas_starting_together_on_an_empty_database_all_start(postgres_url: str) -> None:
    """Several ``semcom cloud serve`` replicas start at once on a new PostgreSQL database:
    each brings the schema up to date (Alembic), one after another, and none fails on a
    table another just created."""
    from concurrent.futures import ThreadPoolExecutor

    from cloud.db import open_database
    from cloud.schema import journal_frames

    barrier = threading.Barrier(4)

    def start(_: int) -> int:
        barrier.wait()
        engine = open_database(postgres_url)
        with engine.connect() as conn:
            n = conn.execute(text(f"SELECT count(*) FROM {journal_frames.name}")).scalar_one()
        engine.dispose()
        return int(n)

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(start, range(4))) == [0, 0, 0, 0]
