"""The indexer: one vector index per embedding space, kept up to date behind the catalog.

Vectors reach the index only after their catalog commit: the ingest writer hands each
committed batch to :meth:`Indexer.put`, and a thread adds them (in large batches, so IVF
assignment stays cheap). The catalog's encoded embeddings are the source of truth, and the
index converges to them whatever happened:

- **Reconcile** (:meth:`Indexer.catch_up`), on start and after a long failure: per space, the
  catalog's embedding ids are compared with the index's; what the index lacks is read back,
  decoded and added, and what the catalog no longer has (retention ran after the last save) is
  removed. A high-water mark (``last_id``) cannot do this: ids do not arrive in order (a
  batch is grouped by codec, an embedding can join a box row stored earlier, PostgreSQL
  sequences are not commit-ordered), so a saved index may lack ids below its ``last_id``.
- **Idempotent adds**: an index skips ids it holds, in any order, so the reconcile and the
  writer's batches committed meanwhile may overlap.
- **Nothing dropped**: a batch whose add fails is kept and retried with exponential backoff
  (``RETRY_FIRST_S`` to ``RETRY_MAX_S``); past ``MAX_HELD`` vectors they are let go and a
  reconcile reads them back from the catalog once the index works again. Only vectors with
  no direction (zero or non-finite after decoding) are refused, counted and logged.

The index is saved at most every ``save_every_s`` seconds and at shutdown: a crash loses the
unsaved tail, which the next start's reconcile re-adds. ``semcom_index_missing_vectors`` (per
space) is the catalog's count minus the index's, counted by the indexer after it adds, at most
every ``count_every_s`` (1 s) and at most 5 % of the time, and so within about a second of it
draining; never per scrape. ``semcom cloud reindex`` rebuilds from scratch.

With several replicas on one PostgreSQL, each replica's index also follows the catalog
(``follow_s`` > 0, :mod:`cloud.index_follow`): every ``follow_s`` it reads the embeddings
other replicas stored and adds them like the writer's batches, a reconcile ``follow_grace_s``
after the start's and then every ``RECONCILE_EVERY_S`` catches the rare transaction that
committed later than the follower's grace. ``semcom_index_staleness_seconds`` is how old the
catalog view the index reflects is: a vector any replica committed before that is searchable.

The indexer is also the API's searcher: :meth:`search` finds the space's index and queries it.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.engine import Engine

from cloud.catalog_vectors import CatalogVectors, SpaceRow
from cloud.index import Hit, IndexSettings, SearchFilter, VectorIndex
from cloud.index import open_index as open_vector_index
from cloud.index_follow import CatalogFollower
from cloud.metrics import CloudMetrics
from cloud.project import NewVectors
from shared.vectors import CodecSet

logger = logging.getLogger(__name__)

CATCH_UP_CHUNK: Final = 20_000  # vectors read back from the catalog per add
RETRY_FIRST_S: Final = 0.5  # a failed add (or reconcile) is retried after this, doubling...
RETRY_MAX_S: Final = 30.0  # ...up to this
MAX_HELD: Final = 100_000  # failed vectors kept in memory; beyond, a reconcile reads them back
COUNT_DUTY: Final = 20.0  # the missing gauge's count waits 20x its own duration (<= 5 % busy)
RECONCILE_EVERY_S: Final = 3600.0  # following the catalog: a full reconcile this often

OpenIndex = Callable[[IndexSettings, str, int], VectorIndex]


class UnknownSpace(KeyError):
    """No index for that embedding space (nothing of that encoder was received)."""


class Indexer:
    def __init__(
        self,
        engine: Engine,
        codecs: CodecSet,
        settings: IndexSettings,
        metrics: CloudMetrics,
        save_every_s: float = 30.0,
        *,
        count_every_s: float = 1.0,
        open_index: OpenIndex = open_vector_index,
        follow_s: float = 0.0,
        follow_grace_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.codecs = codecs
        self.settings = settings
        self.metrics = metrics
        self.save_every_s = save_every_s
        self.count_every_s = count_every_s
        self._open_index = open_index
        self._indexes: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()  # guards _indexes and _pending (each index guards itself)
        self._queue: queue.Queue[list[NewVectors] | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.catching_up = False  # a reconcile is due or running
        self.catalog = CatalogVectors(engine, codecs)
        self.rejected = 0  # vectors with no direction, never indexed
        self.failures = 0  # failed adds and reconciles (each retried)
        #: other replicas' vectors: read from the catalog every follow_s (0: not followed)
        self.follow_s = follow_s
        self.follower = CatalogFollower(self.catalog, follow_grace_s) if follow_s > 0 else None
        self._synced_at = time.monotonic()  # start of the last follow poll fully indexed
        if self.follower is not None:
            metrics.index_staleness.set_function(lambda: time.monotonic() - self._synced_at)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Reconcile every index with the catalog, then index what the writer hands over."""
        self._thread = threading.Thread(target=self._run, name="indexer", daemon=True)
        self.catching_up = True
        self._idle.clear()
        self._thread.start()

    def stop(self) -> None:
        """Index what is queued (one last try), save every index, close them."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        with self._lock:
            for index in self._indexes.values():
                index.save()
                index.close()
            self._indexes.clear()

    def put(self, batches: list[NewVectors]) -> None:
        """Committed vectors (called by the writer thread)."""
        n = sum(len(b) for b in batches)
        with self._lock:
            self._pending += n
            self._idle.clear()
        self.metrics.index_lag.set(self._pending)
        self._queue.put(batches)

    @property
    def pending(self) -> int:
        return self._pending

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every vector handed over so far is in its index."""
        return self._idle.wait(timeout)

    # ---------------------------------------------------------------- queries

    def spaces(self) -> list[str]:
        with self._lock:
            return sorted(self._indexes)

    def get(self, space: str) -> VectorIndex:
        with self._lock:
            index = self._indexes.get(space)
        if index is None:
            raise UnknownSpace(space)
        return index

    def search(
        self, space: str, vectors: NDArray[np.float32], k: int, where: SearchFilter | None
    ) -> list[list[Hit]]:
        return self.get(space).search(vectors, k, where)

    def describe(self) -> dict[str, object]:
        with self._lock:
            indexes = dict(self._indexes)
        return {
            "backend": self.settings.backend,
            "catching_up": self.catching_up,
            "pending_vectors": self._pending,
            "undecodable_skipped": self.skipped_undecodable,
            "rejected_vectors": self.rejected,
            "failures": self.failures,
            "spaces": {name: index.describe() for name, index in indexes.items()},
        }

    @property
    def skipped_undecodable(self) -> int:
        """Catalog embeddings read back whose codec this cloud cannot decode."""
        return self.catalog.skipped_undecodable

    def stored_embeddings(self) -> int:
        """Embeddings in the catalog (what a rebuild will index)."""
        return self.catalog.total()

    def remove_before(self, ts_us: int) -> int:
        """Retention: drop vectors captured before ``ts_us`` from every index."""
        with self._lock:
            indexes = list(self._indexes.values())
        return sum(index.remove_before(ts_us) for index in indexes)

    # ---------------------------------------------------------------- work

    def _index(self, space: str, dim: int) -> VectorIndex:
        with self._lock:
            index = self._indexes.get(space)
            if index is None:
                index = self._open_index(self.settings, space, dim)
                self._indexes[space] = index
            return index

    def _run(self) -> None:
        held: dict[str, NewVectors] = {}  # taken from the queue, not indexed yet
        retry_at = 0.0
        delay = RETRY_FIRST_S
        last_save = time.monotonic()
        count_at: float | None = None  # when to count the catalog for the missing gauge
        next_count = 0.0  # not before: count_every_s, and 5 % of the time at most
        follow_at = 0.0  # the next follow poll (after the start's reconcile)
        reconcile_at: float | None = None  # following: the next full reconcile
        polled: float | None = None  # start of a follow poll not fully indexed yet
        stopping = False
        while True:
            now = time.monotonic()
            due = [t for t in (count_at,) if t is not None]
            if self.catching_up or held:
                due.append(retry_at)
            if self.follower is not None and not self.catching_up:
                due += [follow_at, *([reconcile_at] if reconcile_at is not None else [])]
            timeout = None if not due else max(0.0, min(due) - now)
            stopping |= self._take(held, timeout)
            if self.follower is not None and not self.catching_up and not stopping:
                now = time.monotonic()
                if reconcile_at is None:  # the start's reconcile is done: once more after
                    reconcile_at = now + self.follower.grace_s  # the grace, then hourly
                elif now >= reconcile_at:
                    self.catching_up = True
                    reconcile_at = now + RECONCILE_EVERY_S
                if now >= follow_at and not self.catching_up:
                    polled = self._follow(held) or polled
                    follow_at = time.monotonic() + self.follow_s
            if (self.catching_up or held) and (stopping or time.monotonic() >= retry_at):
                if self._work(held):
                    delay = RETRY_FIRST_S
                else:
                    retry_at = time.monotonic() + delay
                    delay = min(2 * delay, RETRY_MAX_S)
                count_at = count_at or max(time.monotonic(), next_count)
            self._settle(held)
            if polled is not None and not held and not self.catching_up:
                self._synced_at, polled = polled, None  # that poll's vectors are all in
            if stopping:
                break
            if count_at is not None and time.monotonic() >= count_at:
                started = time.monotonic()
                self.count_missing()
                took = time.monotonic() - started
                next_count = started + max(self.count_every_s, COUNT_DUTY * took)
                count_at = None
            if time.monotonic() - last_save >= self.save_every_s:
                self._save_all()
                last_save = time.monotonic()
        left = sum(len(v) for v in held.values())
        if left or self.catching_up:
            logger.error(
                "indexer stopped with %d vectors not indexed%s: the catalog has them, and the "
                "next start adds them",
                left,
                " and a reconcile not done" if self.catching_up else "",
            )

    def _take(self, held: dict[str, NewVectors], timeout: float | None) -> bool:
        """Move what is queued into ``held`` (waiting up to ``timeout`` for the first item;
        None: until one comes); True once the stop sentinel was seen."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        while True:  # merge whatever queued meanwhile: fewer, larger adds
            if item is None:
                return True
            if self.follower is not None:
                self.follower.saw(item)
            for b in item:
                held.setdefault(b.space, NewVectors(b.space)).extend(b)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False

    def _follow(self, held: dict[str, NewVectors]) -> float | None:
        """Read what other replicas stored into ``held`` (pending, like the writer's batches);
        returns when the read began, None when it failed (retried at the next poll)."""
        assert self.follower is not None
        started = time.monotonic()
        try:
            batches = self.follower.poll()
        except Exception:
            self.failures += 1
            logger.exception("reading other replicas' vectors from the catalog failed")
            return None
        n = sum(len(b) for b in batches)
        if n:
            with self._lock:
                self._pending += n
                self._idle.clear()
            self.metrics.index_lag.set(self._pending)
            for b in batches:
                held.setdefault(b.space, NewVectors(b.space)).extend(b)
        return started

    def _work(self, held: dict[str, NewVectors]) -> bool:
        """Reconcile if due, else add what is held; True when nothing failed."""
        if self.catching_up or sum(len(v) for v in held.values()) > MAX_HELD:
            if not self.catching_up:
                logger.warning(
                    "the index is failing: %d vectors are let go from memory and read back "
                    "from the catalog once it works again",
                    sum(len(v) for v in held.values()),
                )
                self.catching_up = True
            taken = list(held.values())  # committed before the reconcile reads the catalog
            held.clear()
            self._release(taken)
            try:
                self.catch_up()
            except Exception:
                self.failures += 1
                logger.exception("reconciling the index with the catalog failed; will retry")
                return False
            self.catching_up = False
            return True
        ok = True
        for space in list(held):
            try:
                self._add([held[space]])
            except Exception:
                self.failures += 1
                ok = False
                logger.exception(
                    "indexing %d vectors of %s failed; kept, will retry", len(held[space]), space
                )
                continue
            self._release([held.pop(space)])
        return ok

    def _release(self, done: list[NewVectors]) -> None:
        """Vectors indexed (or left to a reconcile): no longer pending."""
        with self._lock:
            self._pending -= sum(len(v) for v in done)
        self.metrics.index_lag.set(self._pending)

    def _settle(self, held: dict[str, NewVectors]) -> None:
        with self._lock:
            if self._pending == 0 and not held and not self.catching_up and self._queue.empty():
                self._idle.set()

    def _add(self, batches: list[NewVectors]) -> None:
        merged: dict[str, NewVectors] = {}
        for b in batches:
            merged.setdefault(b.space, NewVectors(b.space)).extend(b)
        for space, vecs in merged.items():
            ids, vectors, cams, classes, ts = vecs.arrays()
            if not len(ids):
                continue
            index = self._index(space, vectors.shape[1])
            norms = np.linalg.norm(vectors, axis=1)
            bad = ~np.isfinite(norms) | (norms < 1e-12)
            if bad.any():  # no direction: no cosine; retrying cannot help
                self.rejected += int(bad.sum())
                self.metrics.index_rejected.labels(space).inc(int(bad.sum()))
                logger.error(
                    "%d vectors of %s are zero or not finite and cannot be indexed (ids %s)",
                    int(bad.sum()),
                    space,
                    ids[bad][:10].tolist(),
                )
                keep = ~bad
                ids, vectors, cams, classes, ts = (
                    ids[keep],
                    vectors[keep],
                    cams[keep],
                    classes[keep],
                    ts[keep],
                )
            index.add(ids, vectors, cams, classes, ts)
            self.metrics.index_vectors.labels(space).set(len(index))

    def _save_all(self) -> None:
        with self._lock:
            indexes = list(self._indexes.values())
        for index in indexes:
            try:
                index.save()
            except Exception:
                logger.exception("saving index %s failed", index.space)

    def count_missing(self) -> dict[str, int]:
        """Catalog embeddings minus indexed vectors, per space; also sets the gauges.

        The sizes are read first, so a commit landing in between can only overstate what is
        missing until the next count, never hide a real gap. Empty when the count failed.
        """
        try:
            with self._lock:
                indexes = dict(self._indexes)
            sizes = {name: len(index) for name, index in indexes.items()}
            counts = self.catalog.counts()
        except Exception:
            logger.exception("counting the catalog's embeddings for the missing gauge failed")
            return {}
        missing: dict[str, int] = {}
        for name, n in counts.items():
            size = sizes.get(name, 0)
            missing[name] = max(0, n - size)
            self.metrics.index_vectors.labels(name).set(size)
            self.metrics.index_missing.labels(name).set(missing[name])
        return missing

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Reconcile every index with the catalog; returns how many vectors were added.

        Per space: catalog ids the index lacks are read back and added (whatever their order
        relative to ``last_id``), ids the catalog no longer has are removed from the index.
        """
        total = 0
        for space in self.catalog.spaces():
            index = self._index(space.name, space.dim)
            total += self._reconcile(space, index, progress)
            self.metrics.index_vectors.labels(space.name).set(len(index))
        if total:
            logger.info("index catch-up: %d vectors added from the catalog", total)
        return total

    def _reconcile(
        self, space: SpaceRow, index: VectorIndex, progress: Callable[[int], None] | None
    ) -> int:
        stored = self.catalog.ids(space.id)
        if self.follower is not None:
            self.follower.start_at(space.name, int(stored[-1]) if len(stored) else 0)
        held = index.ids()
        gone = np.setdiff1d(held, stored, assume_unique=True)
        if len(gone):
            index.remove(gone)
            logger.info(
                "index %s: %d vectors the catalog no longer has removed", space.name, len(gone)
            )
        missing = np.setdiff1d(stored, held, assume_unique=True)
        if len(missing):
            logger.info(
                "index %s: %d of the catalog's %d vectors missing (%d below its last id %d)",
                space.name,
                len(missing),
                len(stored),
                int(np.count_nonzero(missing <= index.last_id)),
                index.last_id,
            )
        added = 0
        for start in range(0, len(missing), CATCH_UP_CHUNK):
            batch = self.catalog.read(space, missing[start : start + CATCH_UP_CHUNK])
            if len(batch):
                self._add([batch])
                added += len(batch)
                if progress is not None:
                    progress(len(batch))
        return added


def rebuild(indexer: Indexer, progress: Callable[[int], None] | None = None) -> int:
    """Throw the saved indexes away and build them again from the catalog (offline)."""
    settings = indexer.settings
    if settings.backend == "faiss" and settings.path is not None and settings.path.exists():
        shutil.rmtree(settings.path)
    elif settings.backend == "qdrant":
        indexer.settings = replace(settings, recreate=True)
    return indexer.catch_up(progress)
