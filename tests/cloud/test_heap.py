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
    monkeypatch.setattr(heap, "give_back", lambda: trims.append(commits[0]) or True)
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
