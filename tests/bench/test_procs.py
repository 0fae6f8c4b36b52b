"""Benchmark child processes: a process group is ended whole, and a log is per start."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from semcom.bench.procs import Child, Children, free_port

# A child that starts a grandchild (same process group) and reports its pid, then waits.
SCRIPT = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('grandchild', g.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def _grandchild(child: Child) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in child.log_since_start().splitlines():
            if line.startswith("grandchild "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(child.log_since_start())


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_kill_ends_the_whole_group_and_restart_logs_anew(tmp_path: Path) -> None:
    child = Child("t", [sys.executable, "-c", SCRIPT], tmp_path / "t.log")
    child.start()
    first = _grandchild(child)
    assert child.kill() is True
    assert child.kill() is False  # not running any more: not a hit
    assert _gone(first)
    child.start()
    second = _grandchild(child)
    assert second != first
    assert child.starts == 2
    assert child.log_since_start().count("grandchild") == 1
    child.terminate(timeout_s=5)
    assert _gone(second)


def test_children_end_on_exit(tmp_path: Path) -> None:
    with Children() as kids:
        child = kids.add(Child("t", [sys.executable, "-c", SCRIPT], tmp_path / "t.log"))
        child.start()
        pid = _grandchild(child)
    assert not child.alive
    assert _gone(pid)


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
