"""A readers-writer lock: many searches at once, a writer alone, writers not starved.

faiss releases the GIL while it searches, so API worker threads searching one index run in
parallel on several cores; a plain mutex would serialise them. Writers (the indexer adding a
batch, retention removing, a rebuild swapping in its result) hold the write side only for
short sections: everything slow (k-means, quantiser assignment, copying arrays) happens
before, under the read side or none.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RWLock:
    """Writer-preferring: once a writer waits, new readers queue behind it."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
