"""glibc heap settings of the cloud process: fewer arenas, and freed heap given back.

glibc gives each thread that allocates concurrently its own arena (up to 8 per core) and keeps
freed memory in them; a server with many threads (uvicorn, the writer, the indexer, aiortc)
grows its RSS with arenas it never hands back. Measured (`semcom bench load`, docs/architecture
"Memory of the cloud"): with two arenas RSS less the index stayed flat from 60 s to idle in a
10-edge run (0.99x, against 1.07x with glibc's defaults), and ``malloc_trim(0)`` after an IVF
retrain gave back 17 % of RSS. Elsewhere than glibc (musl, macOS) both are no-ops.

:func:`trim_when_idle` gives freed heap back once per idle spell (no commit for a period):
after a burst of ingest the glibc heap keeps its high-water mark until trimmed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import cache
from typing import Any, Final

logger = logging.getLogger(__name__)

M_ARENA_MAX: Final = -8  # mallopt parameters (glibc malloc.h)
M_MMAP_THRESHOLD: Final = -3
ARENAS: Final = 2
MMAP_THRESHOLD: Final = 1 << 20
"""Allocations of 1 MiB or more are mapped and unmapped on free. glibc's default threshold
rises up to 32 MiB after the first large free, so index rebuilds' buffers then come from the
heap and stay in RSS after they are freed."""


@cache
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018  (glibc only: AttributeError elsewhere)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas and a fixed mmap threshold (:data:`MMAP_THRESHOLD`)
    from now on (call once, at start-up); True if set."""
    libc = _libc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(M_ARENA_MAX, arenas))
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and ok
    logger.debug("malloc arenas limited to %d, mmap threshold %d: %s", arenas, MMAP_THRESHOLD, ok)
    return ok


def give_back() -> bool:
    """Return freed heap to the system (``malloc_trim(0)``); True if memory was released."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


IDLE_TRIM_S: Final = 10.0


async def trim_when_idle(activity: Callable[[], int], period_s: float = IDLE_TRIM_S) -> None:
    """Run forever: every ``period_s``, when ``activity()`` has not changed since the last
    look (no ingest), trim the heap once (:func:`give_back`, in a worker thread); again only
    after the next busy period."""
    if _libc() is None:
        return
    last, trimmed = activity(), False
    while True:
        await asyncio.sleep(period_s)
        now = activity()
        if now != last:
            last, trimmed = now, False
        elif not trimmed:
            released = await asyncio.to_thread(give_back)
            trimmed = True
            logger.debug("idle: heap trimmed (released: %s)", released)
