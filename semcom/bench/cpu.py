"""CPU time of processes and of the machine, from Linux ``/proc`` (seconds).

Benchmarks report CPU seconds per unit of work for each side (the cloud, its database, the
load generator) and how busy the whole machine was meanwhile, so that a figure measured while
other programs ran says so. Off Linux every figure is None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


def _ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_cpu_s(pid: int, reaped: bool = False) -> float | None:
    """User + system seconds of ``pid`` (all its threads); with ``reaped``, also of its
    children that ended and were waited for. None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _ticks()


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    out = []
    for entry in _PROC.iterdir() if _PROC.exists() else ():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def tree_cpu_s(pid: int) -> float | None:
    """Seconds of ``pid``, its live children and the children it reaped (e.g. a PostgreSQL
    postmaster and its backends). Children that end between two readings move their time to
    the parent's reaped total, so a difference of two readings stays right."""
    own = process_cpu_s(pid, reaped=True)
    if own is None:
        return None
    return own + sum(process_cpu_s(c) or 0.0 for c in children(pid))


@dataclass(frozen=True)
class MachineCpu:
    """Busy and total CPU seconds of the whole machine (every core) since boot."""

    busy_s: float
    total_s: float

    def since(self, earlier: MachineCpu) -> dict[str, float]:
        """What the machine did between ``earlier`` and this reading: busy core-seconds, and
        the share of the cores that was busy (0..1)."""
        busy = self.busy_s - earlier.busy_s
        total = self.total_s - earlier.total_s
        return {"busy_cpu_s": round(busy, 2), "busy_share": round(busy / total, 3) if total else 0}


def machine_cpu() -> MachineCpu | None:
    """The machine's CPU counters (``/proc/stat``), None off Linux."""
    try:
        line = (_PROC / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in line[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # user..steal (guest time is inside user)
    return MachineCpu((total - idle) / _ticks(), total / _ticks())


def cores() -> int:
    return os.cpu_count() or 1
