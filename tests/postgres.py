"""A throwaway PostgreSQL cluster for tests: initdb in a temp folder, a free port, pg_ctl.

The server binaries are looked up on PATH and in the Debian/Ubuntu locations; without them the
tests that need PostgreSQL are skipped with that reason. PostgreSQL refuses to run as root, so
as root the cluster runs as the ``postgres`` (or ``nobody``) account.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def server_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _account() -> tuple[list[str], int | None]:
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], entry.pw_uid
    raise RuntimeError("running as root and no unprivileged account for PostgreSQL")


@contextmanager
def cluster() -> Iterator[str]:
    """Start a cluster; yields a SQLAlchemy URL of an empty database; removes it after."""
    bindir = server_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries (pg_ctl, initdb) not found")
    prefix, uid = _account()
    root = Path(tempfile.mkdtemp(prefix="semcom-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if uid is not None:
        for p in (root, sockets):
            os.chown(p, uid, -1)
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "semcom", "-A", "trust", "-E", "UTF8")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-w",
        "-l",
        str(root / "log"),
        "start",
    )
    try:
        yield f"postgresql+psycopg://semcom@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
