"""The cloud's glibc heap settings take effect where glibc is the C library."""

from __future__ import annotations

import platform

import pytest

from cloud.heap import give_back, limit_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (mallopt, malloc_trim)")
def test_arenas_are_limited_and_freed_heap_can_be_given_back() -> None:
    assert limit_arenas(8) is True  # glibc accepts M_ARENA_MAX; 8 keeps the test harmless
    blocks = [bytearray(64 * 1024) for _ in range(200)]  # heap, below the mmap threshold
    del blocks
    assert isinstance(give_back(), bool)
