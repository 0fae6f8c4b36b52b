"""Opening the catalog database: clear errors, no hang on a server that does not answer."""

from __future__ import annotations

import socket
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
