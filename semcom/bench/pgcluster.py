"""A throwaway PostgreSQL cluster for a benchmark: initdb in a folder, a free port, pg_ctl.

The server binaries are found on PATH or in the Debian/Ubuntu locations
(``/usr/lib/postgresql/*/bin``), as the tests find them (``tests/postgres.py``). PostgreSQL
refuses to run as root, so as root the cluster runs as the ``postgres`` (or ``nobody``)
account. Unlike the tests' cluster it keeps PostgreSQL's durable defaults (``fsync`` and
``synchronous_commit`` on): a benchmark of acknowledged commits must pay for them, as the
SQLite catalog does (``synchronous=FULL``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from semcom.bench.procs import free_port


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or the cluster did not start."""


@dataclass(frozen=True)
class Cluster:
    url: str  # SQLAlchemy URL of the (empty) ``postgres`` database
    data_dir: Path
    version: str

    @property
    def postmaster_pid(self) -> int | None:
        """The server's pid (its backends are its children), from ``postmaster.pid``."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def server_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _account() -> tuple[list[str], int | None]:
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], entry.pw_uid
    raise PostgresUnavailable("running as root and no unprivileged account for PostgreSQL")


@contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a cluster on 127.0.0.1; yields it; stops and removes it after."""
    bindir = server_bin()
    if bindir is None:
        raise PostgresUnavailable("PostgreSQL server binaries (pg_ctl, initdb) not found")
    prefix, uid = _account()
    root = Path(tempfile.mkdtemp(prefix="semcom-bench-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if uid is not None:
        for p in (root, sockets):
            os.chown(p, uid, -1)
    port = free_port()

    def run(*args: str) -> str:
        try:
            done = subprocess.run(
                [*prefix, *args], check=True, capture_output=True, text=True, timeout=120
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailable(f"{Path(args[0]).name} failed: {exc}") from None
        return done.stdout.strip()

    try:
        version = run(str(bindir / "pg_ctl"), "--version")
        run(str(bindir / "initdb"), "-D", str(data), "-U", "semcom", "-A", "trust", "-E", "UTF8")
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
        log = str(root / "log")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", log, "start")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield Cluster(f"postgresql+psycopg://semcom@127.0.0.1:{port}/postgres", data, version)
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
