"""The indexer: one vector index per embedding space, kept up to date behind the catalog.

Vectors reach the index only after their catalog commit: the ingest writer hands each
committed batch to :meth:`Indexer.put`, and a thread adds them (in large batches, so IVF
assignment stays cheap). On start the thread first catches up from the catalog (every
embedding with a detection id above the index's ``last_id``: the catalog's encoded embeddings
are the source of truth), then serves the queue, skipping what it already has. The index is
saved at most every ``save_every_s`` seconds and at shutdown; after a crash the catch-up
re-adds whatever the saved index lacked. ``semcom cloud reindex`` rebuilds from scratch.

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

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from cloud.index import Hit, IndexSettings, SearchFilter, VectorIndex, open_index
from cloud.metrics import CloudMetrics
from cloud.project import NewVectors
from cloud.schema import codecs as codecs_table
from cloud.schema import detections, embeddings, spaces
from shared.errors import CodecError
from shared.vectors import CodecSet, VectorCodec, create_codec

logger = logging.getLogger(__name__)

CATCH_UP_CHUNK = 20_000


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
    ) -> None:
        self.engine = engine
        self.codecs = codecs
        self.settings = settings
        self.metrics = metrics
        self.save_every_s = save_every_s
        self._indexes: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()  # guards _indexes (each index guards itself)
        self._queue: queue.Queue[list[NewVectors] | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.catching_up = False
        self.skipped_undecodable = 0

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="indexer", daemon=True)
        self.catching_up = True
        self._thread.start()

    def stop(self) -> None:
        """Index what is queued, save every index, close them."""
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
            "spaces": {name: index.describe() for name, index in indexes.items()},
        }

    def stored_embeddings(self) -> int:
        """Embeddings in the catalog (what a rebuild will index)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(embeddings)).scalar_one())

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
                index = open_index(self.settings, space, dim)
                self._indexes[space] = index
            return index

    def _run(self) -> None:
        try:
            self.catch_up()
        except Exception:
            logger.exception("index catch-up failed; searches miss older vectors until reindex")
        finally:
            self.catching_up = False
        last_save = time.monotonic()
        while True:
            item = self._queue.get()
            if item is None:
                break
            batches = list(item)
            while True:  # merge whatever queued meanwhile: fewer, larger adds
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batches += more
            try:
                self._add(batches)
            except Exception:
                logger.exception("indexing failed for %d vectors", sum(len(b) for b in batches))
            with self._lock:
                self._pending -= sum(len(b) for b in batches)
                if self._pending == 0 and self._queue.empty():
                    self._idle.set()
            self.metrics.index_lag.set(self._pending)
            if time.monotonic() - last_save >= self.save_every_s:
                self._save_all()
                last_save = time.monotonic()

    def _add(self, batches: list[NewVectors]) -> None:
        merged: dict[str, NewVectors] = {}
        for b in batches:
            merged.setdefault(b.space, NewVectors(b.space)).extend(b)
        for space, vecs in merged.items():
            ids, vectors, cams, classes, ts = vecs.arrays()
            index = self._index(space, vectors.shape[1])
            keep = ids > index.last_id  # the catch-up may have added them already
            if keep.any():
                index.add(ids[keep], vectors[keep], cams[keep], classes[keep], ts[keep])
            self.metrics.index_vectors.labels(space).set(len(index))

    def _save_all(self) -> None:
        with self._lock:
            indexes = list(self._indexes.values())
        for index in indexes:
            try:
                index.save()
            except Exception:
                logger.exception("saving index %s failed", index.space)

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Add every catalog embedding newer than each index's ``last_id``; returns how many."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(spaces.c.id, spaces.c.name, spaces.c.dim)).all()
            known = {
                int(r.fingerprint): (str(r.codec_id), int(r.dim))
                for r in conn.execute(select(codecs_table)).all()
            }
        total = 0
        for space_id, name, dim in rows:
            index = self._index(str(name), int(dim))
            total += self._catch_up_space(int(space_id), index, known, progress)
            self.metrics.index_vectors.labels(str(name)).set(len(index))
        if total:
            logger.info("index catch-up: %d vectors added from the catalog", total)
        return total

    def _catch_up_space(
        self,
        space_id: int,
        index: VectorIndex,
        known: dict[int, tuple[str, int]],
        progress: Callable[[int], None] | None,
    ) -> int:
        added = 0
        after = index.last_id
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(
                        embeddings.c.detection_id,
                        embeddings.c.codec,
                        embeddings.c.code,
                        detections.c.camera_id,
                        detections.c.class_id,
                        detections.c.ts_us,
                    )
                    .join(detections, detections.c.id == embeddings.c.detection_id)
                    .where(embeddings.c.space_id == space_id, embeddings.c.detection_id > after)
                    .order_by(embeddings.c.detection_id)
                    .limit(CATCH_UP_CHUNK)
                ).all()
            if not rows:
                return added
            after = int(rows[-1][0])
            batch = NewVectors(index.space)
            by_codec: dict[int, list[int]] = {}
            for n, row in enumerate(rows):
                by_codec.setdefault(int(row[1]), []).append(n)
            for fp, members in by_codec.items():
                codec = self._codec(fp, known)
                if codec is None:
                    self.skipped_undecodable += len(members)
                    continue
                codes = np.frombuffer(b"".join(rows[n][2] for n in members), np.uint8)
                batch.vectors.append(codec.decode(codes.reshape(len(members), -1)))
                batch.ids += [int(rows[n][0]) for n in members]
                batch.cameras += [int(rows[n][3]) for n in members]
                batch.classes += [int(rows[n][4]) for n in members]
                batch.ts_us += [int(rows[n][5]) for n in members]
            if len(batch):
                ids, vectors, cams, classes, ts = batch.arrays()
                order = np.argsort(ids, kind="stable")  # ids increase within one add
                index.add(ids[order], vectors[order], cams[order], classes[order], ts[order])
                added += len(batch)
                if progress is not None:
                    progress(len(batch))

    def _codec(self, fp: int, known: dict[int, tuple[str, int]]) -> VectorCodec | None:
        if fp in self.codecs:
            return self.codecs.resolve(fp)
        if fp in known:
            codec_id, dim = known[fp]
            try:
                codec = create_codec(codec_id, dim)
            except CodecError:
                codec = None
            if codec is not None:
                self.codecs.add(codec)
                return codec
            logger.error(
                "embeddings coded with %s (%#010x) cannot be decoded: add its codebook to the "
                "cloud config (codebooks) and run `semcom cloud reindex`",
                codec_id,
                fp,
            )
        return None


def rebuild(indexer: Indexer, progress: Callable[[int], None] | None = None) -> int:
    """Throw the saved indexes away and build them again from the catalog (offline)."""
    settings = indexer.settings
    if settings.backend == "faiss" and settings.path is not None and settings.path.exists():
        shutil.rmtree(settings.path)
    elif settings.backend == "qdrant":
        indexer.settings = replace(settings, recreate=True)
    return indexer.catch_up(progress)
