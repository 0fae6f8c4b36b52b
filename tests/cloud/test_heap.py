"""The cloud's glibc heap settings take effect where glibc is the C library."""

from __future__ import annotations

import asyncio
import platform

import pytest

from cloud.heap import give_back, limit_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (mallopt, malloc_trim)")
def test_arenas_are_limited_and_freed_heap_can_be_given_back() -> None:
    assert limit_arenas(8) is True  # glibc accepts M_ARENA_MAX; 8 keeps the test harmless
    blocks = [bytearray(64 * 1024) for _ in range(200)]  # heap, below the mmap threshold
    del blocks
    assert isinstance(give_back(), bool)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (malloc_trim)")
def test_the_heap_is_trimmed_once_per_idle_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_idle_spells(monkeypatch))


async def _idle_spells(monkeypatch: pytest.MonkeyPatch) -> None:
    import cloud.heap as heap

    trims: list[int] = []
    commits = [0]

    def give_back() -> bool:
        trims.append(commits[0])
        return True

    monkeypatch.setattr(heap, "give_back", give_back)
    task = asyncio.create_task(heap.trim_when_idle(lambda: commits[0], period_s=0.02))
    for _ in range(10):  # busy: a commit between every look
        commits[0] += 1
        await asyncio.sleep(0.02)
    busy = list(trims)
    await asyncio.sleep(0.2)  # idle: trimmed once, not at every look
    commits[0] += 1  # busy again, then idle again: one more trim
    await asyncio.sleep(0.2)
    task.cancel()
    assert len(busy) <= 1
    assert trims[len(busy) :] == [10, 11]


_BIG_FREES = """
import sys, numpy as np
from cloud.heap import limit_arenas
if sys.argv[1] == "limited":
    limit_arenas()
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
a = np.ones(40 << 17); del a  # a 40 MiB buffer freed: glibc's mmap threshold rises to it
keep = []
for _ in range(5):
    b = np.ones(24 << 17); keep.append(bytearray(1000)); del b
base = rss_mib()
big = [np.ones(3 << 17) for _ in range(10)]  # 30 MiB in 3 MiB buffers
small = [bytearray(200) for _ in range(1000)]  # small objects allocated after them
del big
print(rss_mib() - base)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (mallopt)")
def test_freed_large_buffers_leave_rss_after_a_large_free() -> None:
    """After a large free (an index rebuild), glibc serves megabyte buffers from the heap and
    keeps them in RSS when they are freed; the cloud's fixed mmap threshold gives them back."""
    import subprocess
    import sys

    def held(mode: str) -> float:
        run = [sys.executable, "-c", _BIG_FREES, mode]
        return float(subprocess.run(run, check=True, capture_output=True, text=True).stdout)

    assert held("glibc-default") > 5.0  # the problem is real where this runs
    assert held("limited") < 2.0
