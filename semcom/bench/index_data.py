"""The workload of ``semcom bench index``: vectors, their metadata, filters, exact answers.

Vectors (stated in the output):

- ``clustered`` (default): :func:`shared.synthetic.split` draws of one
  :class:`~shared.synthetic.ClusteredSpec` (Gaussian mixture on a low-rank subspace plus
  isotropic noise, unit-normalised), base in chunks of 100k, queries a disjoint draw;
- ``uniform``: uniform on the unit sphere, the hard case (neighbours barely nearer than
  anything else, so IVF needs many more probes);
- a file of real embeddings (``shared.vectors.load_embeddings``): queries are held-out rows.

Metadata: detection i is seen by camera ``i mod 100`` scrambled (uniform over 100 cameras),
has a traffic-like class mix (cars half of it), and is captured at ``i x 86.4 ms`` over one
day plus up to 2 s of jitter (capture times arrive slightly out of order, as from several
edges). Metadata is drawn independently of the vectors. Filters, drawn per query, one per
attribute and selectivity (share of the vectors admitted):

- ``1%``: one camera of 100;
- ``10%``: a time window of a tenth of the day;
- ``50%``: a class set, cars or every other class (each half of the detections);
- ``0.1%``: one camera within a 10 % window (a combination, to show the exact plan).

Ground truth is brute force: every query against every base vector (chunked matrix
products in float32), each filter applied as a mask, top k by argpartition; the share of
the vectors each filter admitted is counted on the way (the measured selectivity).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cloud.index import SearchFilter
from shared import synthetic
from shared.vectors import load_embeddings

CAMERAS = 100
DAY_US = 86_400_000_000
JITTER_US = 2_000_000
CLASSES = np.array([2, 0, 7, 5, 1, 3])  # COCO car, person, truck, bus, bicycle, motorcycle
CLASS_SHARE = np.array([0.50, 0.20, 0.10, 0.06, 0.08, 0.06])
CLASS_SETS = ((2,), (0, 7, 5, 1, 3))  # the 50 % filter: cars, or every other class
CHUNK = 100_000  # rows drawn at a time
TRUTH_CHUNK = 20_000  # base rows per brute-force step (queries x rows float32 scores)
METADATA = (
    "camera uniform over 100 cameras; class car 50 %, person 20 %, truck 10 %, bicycle 8 %, "
    "bus 6 %, motorcycle 6 %; capture times spread evenly over one day in id order plus up "
    "to 2 s jitter. Filters drawn per query: 1% = one camera of 100; 10% = a time window of "
    "a tenth of the day; 50% = cars, or every other class; 0.1% = one camera within a 10% "
    "window"
)

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class Workload:
    description: str
    base: F32
    queries: F32
    ids: NDArray[np.int64]
    cameras: NDArray[np.int32]
    classes: NDArray[np.int32]
    ts_us: NDArray[np.int64]


@dataclass(frozen=True)
class QueryFilters:
    """One filter kind for every query: per-query camera, class set and window (None: unused).

    ``class_set[i]`` indexes :data:`CLASS_SETS`. The same conditions are given to the index
    (:meth:`where`), to brute force (:meth:`mask`) and to the baseline's post-filter
    (:meth:`admits`)."""

    name: str
    count: int  # queries
    camera: NDArray[np.int32] | None = None
    start: NDArray[np.int64] | None = None
    stop: NDArray[np.int64] | None = None
    class_set: NDArray[np.int32] | None = None

    def where(self, i: int) -> SearchFilter | None:
        if self.camera is None and self.start is None and self.class_set is None:
            return None
        return SearchFilter(
            cameras=None if self.camera is None else (int(self.camera[i]),),
            classes=None if self.class_set is None else CLASS_SETS[int(self.class_set[i])],
            from_us=None if self.start is None else int(self.start[i]),
            to_us=None if self.stop is None else int(self.stop[i]),
        )

    def mask(
        self, cameras: NDArray[np.int32], classes: NDArray[np.int32], ts: NDArray[np.int64]
    ) -> Mask:
        """(queries, rows): which rows each query's filter admits."""
        out = np.ones((self.count, len(ts)), np.bool_)
        if self.camera is not None:
            out &= cameras[None, :] == self.camera[:, None]
        if self.class_set is not None:
            member = np.stack([np.isin(classes, s) for s in CLASS_SETS])  # (sets, rows)
            out &= member[self.class_set]
        if self.start is not None and self.stop is not None:
            out &= (ts[None, :] >= self.start[:, None]) & (ts[None, :] < self.stop[:, None])
        return out

    def admits(self, i: int, w: Workload, rows: I64) -> Mask:
        """Which of ``rows`` (base positions) query ``i``'s filter admits (a post-filter)."""
        out = np.ones(len(rows), np.bool_)
        if self.camera is not None:
            out &= w.cameras[rows] == self.camera[i]
        if self.class_set is not None:
            out &= np.isin(w.classes[rows], CLASS_SETS[int(self.class_set[i])])
        if self.start is not None and self.stop is not None:
            ts = w.ts_us[rows]
            out &= (ts >= self.start[i]) & (ts < self.stop[i])
        return out


@dataclass(frozen=True)
class Truth:
    """Brute-force answers per filter name: top-k ids (-1 pads), mean share admitted."""

    ids: dict[str, I64]
    selectivity: dict[str, float]


def _unit(x: NDArray[np.floating]) -> F32:
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), np.float32)


def vectors(
    n: int, dim: int, n_queries: int, distribution: str, path: Path | None, seed: int
) -> tuple[str, F32, F32]:
    if path is not None:
        x = _unit(load_embeddings(path))
        if len(x) <= n_queries:
            raise ValueError(f"{path} has {len(x)} rows; need more than {n_queries}")
        order = np.random.default_rng(seed).permutation(len(x))
        base = x[order[n_queries : n_queries + n]]
        text = f"file {path.name}: {len(base)} base + {n_queries} held-out query rows"
        text += f" of {x.shape[1]}-d embeddings, unit-normalised"
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as stored:
                if "description" in stored.files:
                    text += f" ({stored['description']})"
        return text, base, x[order[:n_queries]]
    if distribution == "uniform":
        rng = np.random.default_rng(seed)
        base = np.concatenate(
            [_unit(rng.standard_normal((min(CHUNK, n - s), dim))) for s in range(0, n, CHUNK)]
        )
        queries = _unit(rng.standard_normal((n_queries, dim)))
        return f"uniform on the unit sphere in {dim} dims (the hard case)", base, queries
    spec = synthetic.ClusteredSpec(dim=dim)
    sizes = (*(min(CHUNK, n - s) for s in range(0, n, CHUNK)), n_queries)
    *parts, queries = synthetic.split(sizes, spec, seed=seed)
    text = f"{synthetic.describe(spec)}; queries a disjoint draw of the same mixture"
    return text, np.concatenate(parts), queries


def workload(
    n: int, dim: int, n_queries: int, distribution: str, path: Path | None, seed: int
) -> Workload:
    description, base, queries = vectors(n, dim, n_queries, distribution, path, seed)
    n = len(base)
    rng = np.random.default_rng(seed + 7)
    ids = 1_000 + np.arange(n, dtype=np.int64) * 3  # increasing, with gaps
    cameras = rng.permutation(np.arange(n) % CAMERAS).astype(np.int32) + 1
    classes = rng.choice(CLASSES, size=n, p=CLASS_SHARE).astype(np.int32)
    t0 = 1_700_000_000_000_000
    ts = t0 + np.arange(n, dtype=np.int64) * (DAY_US // max(n, 1))
    ts += rng.integers(0, JITTER_US, n)
    return Workload(description, base, queries, ids, cameras, classes, ts)


def filters(w: Workload, seed: int) -> list[QueryFilters]:
    rng = np.random.default_rng(seed + 11)
    nq = len(w.queries)
    camera = rng.integers(1, CAMERAS + 1, nq).astype(np.int32)
    t_lo, t_hi = int(w.ts_us.min()), int(w.ts_us.max()) + 1
    tenth = (t_hi - t_lo) // 10
    start = t_lo + rng.integers(0, t_hi - t_lo - tenth, nq)
    stop = start + tenth
    class_set = rng.integers(0, len(CLASS_SETS), nq).astype(np.int32)
    return [
        QueryFilters("none", nq),
        QueryFilters("1%", nq, camera=camera),
        QueryFilters("10%", nq, start=start, stop=stop),
        QueryFilters("50%", nq, class_set=class_set),
        QueryFilters("0.1%", nq, camera=camera, start=start, stop=stop),
    ]


def ground_truth(
    w: Workload,
    kinds: list[QueryFilters],
    k: int,
    on_chunk: Callable[[int], None] = lambda n: None,
) -> Truth:
    """Exact top-k ids of every query under every filter (-1 pads when fewer match)."""
    nq = len(w.queries)
    best = {f.name: np.full((nq, k), -np.inf, np.float32) for f in kinds}
    where = {f.name: np.full((nq, k), -1, np.int64) for f in kinds}
    admitted = dict.fromkeys((f.name for f in kinds), 0)
    for s in range(0, len(w.base), TRUTH_CHUNK):
        rows = slice(s, s + TRUTH_CHUNK)
        scores = w.queries @ w.base[rows].T
        chunk_ids = w.ids[rows]
        for f in kinds:
            mask = f.mask(w.cameras[rows], w.classes[rows], w.ts_us[rows])
            admitted[f.name] += int(mask.sum())
            masked = scores if f.where(0) is None else np.where(mask, scores, -np.inf)
            kk = min(k, masked.shape[1])
            top = np.argpartition(-masked, kk - 1, axis=1)[:, :kk]
            both = np.concatenate([best[f.name], np.take_along_axis(masked, top, axis=1)], axis=1)
            ids = np.concatenate([where[f.name], chunk_ids[top]], axis=1)
            keep = np.argpartition(-both, k - 1, axis=1)[:, :k]
            best[f.name] = np.take_along_axis(both, keep, axis=1)
            where[f.name] = np.take_along_axis(ids, keep, axis=1)
        on_chunk(len(chunk_ids))
    for f in kinds:
        where[f.name][~np.isfinite(best[f.name])] = -1
    share = {name: count / max(1, nq * len(w.base)) for name, count in admitted.items()}
    return Truth(where, share)


def recall(found: list[list[int]], truth: NDArray[np.int64]) -> float:
    """k-recall@k: the share of each query's true top k (those that exist) found, averaged."""
    shares = []
    for hits, true in zip(found, truth, strict=True):
        real = set(true[true >= 0].tolist())
        if real:
            shares.append(len(real & set(hits)) / len(real))
    return float(np.mean(shares)) if shares else 1.0
