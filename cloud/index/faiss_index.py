"""The embedded vector index: faiss, one per embedding space, persisted beside the catalog.

Structure (``IndexSettings.kind``; details in :mod:`cloud.index.faiss_ops`). The columns hold
each vector once as float16 (exact search, re-ranking, retraining, persistence); Flat is those
columns alone, IVF adds 8-bit codes in its lists (re-ranked exactly), HNSW a float16 graph.

- ``auto`` (default): an exhaustive (exact) Flat index up to ``flat_max`` live vectors. Crossing it
  trains an IVF index on a sample of what is stored and moves every vector into it. IVF, not
  HNSW, because ingest needs fast inserts: an IVF insert is one quantiser search (~200k
  vectors/s at 1024 lists x 384 dims on two cores), an HNSW insert a graph update (~1.3k/s
  at 100k x 384).
- ``ivf``: IVF as soon as there are enough vectors to train (39 per list).
- ``flat``, ``hnsw``: that structure always.

Growth rule: an IVF index is sized for ``nlist_for(n)`` lists, the power of two nearest to
sqrt(n). It is retrained (k-means on a sample of the stored vectors, then every vector
re-assigned) when ``nlist_for(live)`` reaches twice its ``nlist``, i.e. once it holds 2 x
nlist^2 vectors and each list twice its design length, which would make every probe scan
twice the vectors it was sized for; and when retention shrinks it to a quarter of its lists'
worth. So nlist doubles every fourfold growth (from 20k vectors: 128 lists, then 256 at 32k,
512 at 131k, 1024 at 524k, 2048 at 2.1M), retraining costs stay a geometric series (every
vector is re-assigned about 4/3 times over the index's life), and list lengths stay within
0.7-1.4 x sqrt(n). A fixed ``nlist`` setting disables retraining. ``auto`` falls back to Flat
below ``flat_max / 2`` live vectors (hysteresis, so it does not flap).

Removal: IVF drops vectors from faiss at once (``remove_ids``); Flat and HNSW keep them as
tombstones excluded by a selector. All three compact (rebuild without the removed rows, new
positions) once ``compact_dead_share`` of the stored rows are removed.

Concurrency: searches share a readers-writer lock (faiss releases the GIL, so they run in
parallel). Writers (add, remove, save, rebuild) are serialised by a second lock and do their
slow work (quantiser assignment, k-means, copying, writing files) outside the write side,
which they take only to publish: a retrain of a million vectors does not stall searches.
faiss's OpenMP threads are left at the process default: measured at 1M x 384 on two cores,
one-query IVF searches take the same time with one or two threads, and batched adds and
k-means use both.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloud.heap import give_back
from cloud.index import faiss_ops as ops
from cloud.index import persist
from cloud.index.base import Hit, IndexSettings, SearchFilter
from cloud.index.batch import F32, I64, Batch, check_batch, check_ids, check_queries, space_key
from cloud.index.columns import Candidates, Columns
from cloud.index.errors import IndexClosed
from cloud.index.planner import Plan, Shape, Structure, plan
from cloud.index.rwlock import RWLock

logger = logging.getLogger(__name__)

KIND_NAMES = {"flat": "flat_fp16", "ivf": "ivf_sq8", "hnsw": "hnsw_fp16"}


def wanted(
    settings: IndexSettings, kind: Structure, nlist: int, live: int
) -> tuple[Structure, int]:
    """The structure (kind, nlist) ``live`` vectors should have; see the module docstring."""
    if settings.kind in ("flat", "hnsw"):
        return settings.kind, 0
    fixed = settings.nlist
    if kind != "ivf":
        want = fixed or ops.nlist_for(live)
        trainable = live >= ops.MIN_POINTS_PER_LIST * want
        if trainable and (settings.kind == "ivf" or live > settings.flat_max):
            return "ivf", want
        return "flat", 0
    if settings.kind == "auto" and live < settings.flat_max // 2:
        return "flat", 0
    if fixed is not None:
        return "ivf", fixed
    ideal = ops.nlist_for(live)
    if ideal >= 2 * nlist or ideal * 4 <= nlist:
        return "ivf", ideal
    return "ivf", nlist


class FaissIndex:
    """A :class:`~cloud.index.base.VectorIndex` on faiss; see the module docstring."""

    def __init__(self, space: str, dim: int, settings: IndexSettings | None = None) -> None:
        self.space = space
        self.dim = dim
        self.settings = settings or IndexSettings()
        self._rw = RWLock()
        self._writer = threading.Lock()
        self._directory: Path | None = (
            self.settings.path / space_key(space) if self.settings.path else None
        )
        self._columns = Columns(dim)
        self._faiss: Any = self._new(self._initial_kind(), None)
        self._kind: Structure = ops.kind_of(self._faiss)
        self._nlist = 0  # IVF lists (0: not IVF)
        self._last_id = 0
        self._trained_at = 0
        self._closed = False
        self._rebuilds = 0
        self._train_s = 0.0
        self._fallbacks = 0  # filtered searches redone exactly (see search)
        # What the files hold: the position layout, its segments, tombstones, structure.
        self._layout = uuid.uuid4().hex
        self._saved: persist.Manifest | None = None
        self._structure_changed = True
        if self._directory is not None:
            if self.settings.recreate:
                shutil.rmtree(self._directory, ignore_errors=True)
            elif self._directory.exists():
                self._load(self._directory)
        with self._writer:
            self._restructure_if_needed()

    # ------------------------------------------------------------------ VectorIndex

    def add(
        self,
        ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
        cameras: NDArray[np.int32],
        classes: NDArray[np.int32],
        ts_us: NDArray[np.int64],
    ) -> None:
        with self._writer:
            self._check_open()
            batch = check_batch(self.space, self.dim, ids, vectors, cameras, classes, ts_us)
            held = self._columns.holds(batch.ids)
            if held.any():  # added before (a catch-up and the writer's batches overlap)
                new = ~held
                batch = Batch(
                    batch.ids[new],
                    batch.vectors[new],
                    batch.cameras[new],
                    batch.classes[new],
                    batch.ts_us[new],
                )
            if not len(batch):
                return
            cols = self._columns.reserved(len(batch))
            first = cols.n
            cols.write_tail(batch)
            lists = ops.assign(self._faiss, batch.vectors)
            with self._rw.write():
                self._columns = cols
                ops.insert(self._faiss, batch.vectors, first, lists)
                cols.publish(batch.vectors)
                self._last_id = max(self._last_id, int(batch.ids[-1]))
                if self._kind == "hnsw":
                    self._structure_changed = True
            self._restructure_if_needed()

    def search(
        self, queries: NDArray[np.float32], k: int, where: SearchFilter | None = None
    ) -> list[list[Hit]]:
        q = check_queries(self.space, self.dim, queries, k)
        with self._rw.read():
            self._check_open()
            cols = self._columns
            chosen, cand = self._plan(where, k)
            if chosen.route == "empty" or not len(q):
                return [[] for _ in range(len(q))]
            if chosen.route == "exact":
                scores, found = ops.exact(q, k, cand, cols)
                return _hits(scores, found, cols.ids)
            scores, found = self._index_search(q, k, chosen, cand, cols, self._faiss)
            hits = _hits(scores, found, cols.ids)
            # Fewer hits than matches: the matches lie away from the query's nearest lists
            # (a filter anti-correlated with the vectors). Answer those queries exactly.
            short = [i for i, row in enumerate(hits) if len(row) < min(k, cand.count)]
            if short and where is not None:
                self._fallbacks += len(short)
                scores, found = ops.exact(q[short], k, cand, cols)
                for i, row in zip(short, _hits(scores, found, cols.ids), strict=True):
                    hits[i] = row
            return hits

    def remove_before(self, ts_us: int) -> int:
        with self._writer:
            self._check_open()
            return self._drop(self._columns.older_than(ts_us))

    def remove(self, ids: NDArray[np.int64]) -> int:
        with self._writer:
            self._check_open()
            return self._drop(self._columns.find(check_ids(ids)))

    def __len__(self) -> int:
        return self._columns.live

    def ids(self) -> NDArray[np.int64]:
        with self._rw.read():
            self._check_open()
            return self._columns.live_ids()

    @property
    def last_id(self) -> int:
        return self._last_id

    def save(self) -> None:
        if self._directory is None:
            return
        with self._writer:
            self._check_open()
            self._save(self._directory)

    def close(self) -> None:
        with self._writer, self._rw.write():
            self._closed = True
            self._columns = Columns(self.dim)
            self._faiss = None

    def describe(self) -> dict[str, object]:
        with self._rw.read():
            cols, index = self._columns, self._faiss
            out: dict[str, object] = {
                "backend": "faiss",
                "space": self.space,
                "dim": self.dim,
                "kind": KIND_NAMES[self._kind],
                "size": cols.live,
                "stored_rows": cols.n,
                "removed_not_compacted": cols.dead,
                "last_id": self._last_id,
                "late_rows": cols.late,
                "setting_kind": self.settings.kind,
                "flat_max": self.settings.flat_max,
                "exact_max_candidates": self.settings.exact_max_candidates,
                "rebuilds": self._rebuilds,
                "exact_fallbacks": self._fallbacks,
                "train_seconds": round(self._train_s, 3),
                "memory_bytes": cols.nbytes + _faiss_bytes(index, self._kind, self.dim),
                "path": str(self._directory) if self._directory else None,
            }
            if self._kind == "ivf":
                out.update(
                    nlist=self._nlist,
                    nprobe=self.settings.nprobe,
                    trained_at=self._trained_at,
                )
            if self._kind == "hnsw":
                out.update(m=self.settings.hnsw_m, ef_search=self.settings.hnsw_ef_search)
            return out

    # ------------------------------------------------------------------ diagnostics

    def explain(self, where: SearchFilter | None, k: int = 10) -> Plan:
        """The plan a search with this filter would run now."""
        with self._rw.read():
            self._check_open()
            return self._plan(where, k)[0]

    @property
    def structure(self) -> Structure:
        return self._kind

    # ------------------------------------------------------------------ internals

    def _index_search(
        self, q: F32, k: int, chosen: Plan, cand: Candidates, cols: Columns, index: Any
    ) -> tuple[F32, I64]:
        """The faiss search of a plan; IVF candidates (8-bit scores) re-ranked exactly."""
        call = ops.Prepared(chosen, self._kind, cand, cols.n)
        if self._kind != "ivf":
            return call.search(index, q, k)
        _, found = call.search(index, q, ops.refine_k(k, self.settings.refine_factor))
        return ops.refine(q, k, found, cols)

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosed(self.space)

    def _initial_kind(self) -> Structure:
        return "hnsw" if self.settings.kind == "hnsw" else "flat"

    def _new(self, kind: Structure, cols: Columns | None, nlist: int = 0) -> Any:
        """A new faiss index of ``kind`` holding ``cols`` (IVF: trained on them)."""
        if kind == "flat":
            return None  # Flat is the columns alone (see faiss_ops)
        if kind == "hnsw":
            index = ops.new_hnsw(self.dim, self.settings)
        else:
            assert cols is not None
            started = time.perf_counter()
            live = np.flatnonzero(cols.alive)
            index = ops.train_ivf(cols.vectors, live, nlist, self.settings.seed)
            self._train_s += time.perf_counter() - started
        if cols is not None:
            ops.fill(index, cols)
        return index

    def _plan(self, where: SearchFilter | None, k: int) -> tuple[Plan, Candidates]:
        cols = self._columns
        filtered = where is not None and not where.is_everything
        if filtered or (cols.dead and self._kind != "ivf"):
            cand = cols.candidates(where if filtered else None)
        else:
            cand = Candidates(0, cols.n, None, cols.live)
        shape = Shape(self._kind, cols.live, self._nlist)
        return plan(shape, cand.count, k, self.settings, filtered), cand

    def _drop(self, positions: I64) -> int:
        if not len(positions):
            return 0
        with self._rw.write():
            self._columns.kill(positions)
            ops.remove(self._faiss, positions)
        self._restructure_if_needed()
        return len(positions)

    def _restructure_if_needed(self) -> None:
        """Grow, shrink, retrain or compact when the rules say so (caller holds _writer)."""
        cols = self._columns
        nlist = self._nlist
        kind, want_nlist = wanted(self.settings, self._kind, nlist, cols.live)
        compact = cols.dead > 0 and cols.dead >= self.settings.compact_dead_share * cols.n
        if (kind, want_nlist) == (self._kind, nlist) and not compact:
            return
        started = time.perf_counter()
        fresh = cols.compacted() if cols.dead else cols
        if kind == "ivf" and self._kind == "ivf" and want_nlist == nlist:
            # compaction only: keep the quantiser and the 8-bit ranges
            index = ops.trained_empty(self._faiss, fresh, self.settings.seed)
            ops.fill(index, fresh)
        else:
            index = self._new(kind, fresh, want_nlist)
        with self._rw.write():
            if fresh is not cols:
                self._layout = uuid.uuid4().hex  # positions renumbered: saved segments void
            if kind == "ivf" and (self._kind != "ivf" or want_nlist != nlist):
                self._trained_at = fresh.live
            self._columns, self._faiss, self._kind = fresh, index, kind
            self._nlist = want_nlist
            self._structure_changed = True
            self._rebuilds += 1
        give_back()  # the old structure and the rebuild's temporaries (see cloud/heap.py)
        logger.info(
            "index %s: %s (%d lists) over %d vectors in %.1f s",
            self.space,
            KIND_NAMES[self._kind],
            want_nlist,
            fresh.live,
            time.perf_counter() - started,
        )

    def _save(self, directory: Path) -> None:
        snapshot = persist.Snapshot(
            space=self.space,
            dim=self.dim,
            last_id=self._last_id,
            trained_at=self._trained_at,
            layout=self._layout,
            cols=self._columns,
            index=self._faiss,
            structure_changed=self._structure_changed,
        )
        self._saved = persist.save(directory, snapshot, self._saved)
        self._layout = self._saved.layout
        self._structure_changed = False

    def _load(self, directory: Path) -> None:
        loaded = persist.load(directory, self.space, self.dim)
        if loaded is None:
            return
        saved = loaded.manifest
        self._columns, self._faiss = loaded.cols, loaded.index
        self._kind, self._nlist = ops.kind_of(loaded.index), ops.nlist_of(loaded.index)
        self._last_id, self._trained_at = saved.last_id, saved.trained_at
        self._layout, self._saved = saved.layout, saved
        self._structure_changed = False


def _hits(scores: F32, found: I64, ids: I64) -> list[list[Hit]]:
    out: list[list[Hit]] = []
    for row_scores, row in zip(scores, found, strict=True):
        valid = row >= 0
        out.append(
            [
                Hit(int(i), float(s))
                # float16 storage rounds a cosine by ~1e-4: keep it within [-1, 1]
                for i, s in zip(
                    ids[row[valid]].tolist(),
                    np.clip(row_scores[valid], -1.0, 1.0).tolist(),
                    strict=True,
                )
            ]
        )
    return out


def _faiss_bytes(index: Any, kind: Structure, dim: int) -> int:
    """Approximate memory of the faiss structure (vectors, ids, lists or graph links)."""
    if index is None:
        return 0  # Flat: the columns alone
    n = int(index.ntotal)
    if kind == "ivf":
        ivf = ops.faiss.extract_index_ivf(index)
        return n * (int(ivf.code_size) + 8) + ops.nlist_of(index) * 4 * dim
    if kind == "hnsw":
        per_vector = int(index.storage.sa_code_size())
        return n * (per_vector + 2 * 4 * int(index.hnsw.nb_neighbors(0)))
    return 0
