"""What a codec keeps of the meaning of real RoI embeddings: the measures of ``bench fidelity``.

All searches are exact, by inner product (of unit vectors, as in the cloud's index: cosine),
over one *pool* of crops: every crop of the pool is a query once, and the
candidates are the other crops of the same pool. Per query (one value each, averaged later):

- class precision@10 over other tracks: the share of the 10 nearest crops **of other tracks**
  (the query's own track is excluded from the candidates, so sightings of the same object do
  not count) that carry the query's detector class;
- same-track recall@10: whether another sighting of the query's own track, at least ``gap_us``
  away in capture time, is among the 10 nearest. Sightings of the own track closer than the
  gap are removed from the candidates (they are near-copies of the query: finding them says
  nothing). Queries whose track has no sighting that far away are skipped and counted;
- 10-recall@10 and 1-recall@10 against f32 (candidates: every other crop of the pool): the share
  of f32's true 10 nearest (or of its nearest) that the codec's 10 nearest find.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

K: Final = 10
SECOND_US: Final = 1_000_000

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class Pool:
    """The crops searched together: their f32 embeddings and labels (one row per crop)."""

    vectors: F32  # (n, dim) the encoder's output
    tracks: I64  # (n,) track ids, unique across clips
    classes: I64  # (n,) detector class ids
    times_us: I64  # (n,) capture times (us); compared only within a track

    def __post_init__(self) -> None:
        n = len(self.vectors)
        if not len(self.tracks) == len(self.classes) == len(self.times_us) == n:
            raise ValueError(
                f"pool arrays differ in length: vectors {n}, tracks {len(self.tracks)}, "
                f"classes {len(self.classes)}, times {len(self.times_us)}"
            )

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True)
class PerQuery:
    """Per-query outcomes of one codec on one pool; NaN where a query is skipped."""

    class_p10: NDArray[np.float64]
    track_r10: NDArray[np.float64]
    recall_10_at_10: NDArray[np.float64]
    recall_1_at_10: NDArray[np.float64]

    @staticmethod
    def concat(parts: list[PerQuery]) -> PerQuery:
        return PerQuery(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("class_p10", "track_r10", "recall_10_at_10", "recall_1_at_10")
            )
        )


def unit_rows(x: NDArray[np.floating]) -> F32:
    """Rows scaled to unit length (a decoded PQ code is not): cosine, as the cloud's index."""
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), np.float32)


def top_k(queries: F32, base: F32, allowed: Mask, k: int = K) -> NDArray[np.intp]:
    """(q, k) indices of the k best-scoring allowed base rows per query, best first.

    Rows that run out of allowed candidates are padded with -1.
    """
    scores = np.asarray(queries @ base.T, np.float64)
    scores[~allowed] = -np.inf
    k_eff = min(k, base.shape[0])
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    best[~np.isfinite(np.take_along_axis(scores, best, axis=1))] = -1
    if k_eff < k:
        best = np.pad(best, ((0, 0), (0, k - k_eff)), constant_values=-1)
    return np.asarray(best)


def candidate_masks(pool: Pool, gap_us: int = SECOND_US) -> tuple[Mask, Mask, Mask, Mask]:
    """(others, other_tracks, track_candidates, far_sightings), each (n, n).

    ``others``: every crop but the query; ``other_tracks``: crops of other tracks;
    ``track_candidates``: every crop but the query and its own track's sightings closer than
    ``gap_us``; ``far_sightings``: the own track's sightings at least ``gap_us`` away.
    """
    n = len(pool)
    same_track = pool.tracks[:, None] == pool.tracks[None, :]
    far = np.abs(pool.times_us[:, None] - pool.times_us[None, :]) >= gap_us
    others = ~np.eye(n, dtype=bool)
    far_sightings = same_track & far
    return others, ~same_track, others & (~same_track | far), far_sightings


def per_query(
    pool: Pool,
    decoded: F32,
    queries: F32,
    truth: tuple[NDArray[np.intp], NDArray[np.intp]] | None = None,
    gap_us: int = SECOND_US,
    k: int = K,
) -> PerQuery:
    """The four measures for every crop of ``pool`` as a query.

    ``decoded``: the pool's vectors after the codec's round trip (the cloud's index);
    ``queries``: the query vectors (decoded too, or the originals); ``truth``: f32's
    (top-10, top-1) over ``others``, computed here when not given.
    """
    others, other_tracks, track_cands, far = candidate_masks(pool, gap_us)
    if truth is None:
        truth = f32_truth(pool, others, k)
    best_other = top_k(queries, decoded, other_tracks, k)
    valid = best_other >= 0
    same_class = pool.classes[np.where(valid, best_other, 0)] == pool.classes[:, None]
    n_valid = valid.sum(axis=1)
    class_p10 = np.where(
        n_valid > 0, (same_class & valid).sum(axis=1) / np.maximum(n_valid, 1), np.nan
    )

    best_track = top_k(queries, decoded, track_cands, k)
    hit = np.take_along_axis(far, np.where(best_track >= 0, best_track, 0), axis=1)
    hit &= best_track >= 0
    track_r10 = np.where(far.any(axis=1), hit.any(axis=1).astype(np.float64), np.nan)

    found = top_k(queries, decoded, others, k)
    true10, true1 = truth
    r10 = _overlap(true10, found)
    r1 = _overlap(true1, found)
    return PerQuery(class_p10, track_r10, r10, r1)


def f32_truth(
    pool: Pool, others: Mask | None = None, k: int = K
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """f32's true k nearest and nearest of every crop among the others of the pool."""
    if others is None:
        others = ~np.eye(len(pool), dtype=bool)
    best = top_k(pool.vectors, pool.vectors, others, k)
    return best, best[:, :1]


def _overlap(truth: NDArray[np.intp], found: NDArray[np.intp]) -> NDArray[np.float64]:
    """Share of each row's valid ``truth`` entries that appear in its ``found`` row."""
    valid = truth >= 0
    hits = ((truth[:, :, None] == found[:, None, :]) & valid[:, :, None]).any(axis=2).sum(axis=1)
    count = valid.sum(axis=1)
    return np.where(count > 0, hits / np.maximum(count, 1), np.nan)


@dataclass(frozen=True)
class Summary:
    """Means over the measured queries, with how many were measured and skipped."""

    class_p10: float
    track_r10: float
    recall_10_at_10: float
    recall_1_at_10: float
    queries: int
    track_queries: int
    track_skipped: int


def summarise(values: PerQuery) -> Summary:
    def mean(a: NDArray[np.float64]) -> float:
        kept = a[~np.isnan(a)]
        return float(kept.mean()) if len(kept) else float("nan")

    measured = int((~np.isnan(values.track_r10)).sum())
    return Summary(
        class_p10=mean(values.class_p10),
        track_r10=mean(values.track_r10),
        recall_10_at_10=mean(values.recall_10_at_10),
        recall_1_at_10=mean(values.recall_1_at_10),
        queries=len(values.class_p10),
        track_queries=measured,
        track_skipped=len(values.track_r10) - measured,
    )
