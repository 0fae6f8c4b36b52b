"""Same-track recall@k: does a fresh sighting of a road user find another sighting of its track?

The measure the codebook fitter chooses its projection by (:mod:`cloud.codebook_fit`), and the
one ``semcom bench fidelity`` reports (``sim.recall_metrics``, which computes it over the same
masks; a test checks the two agree). Generic numpy, so both ends may use it.

Every row of a pool is a query once (its f32 vector); the candidates are the pool's stored
vectors (decoded codes, compared by cosine as in the cloud's index) except the query's own row
and the sightings of its own track closer than ``gap_us`` in capture time (near-copies of the
query: finding them says nothing). A query hits when one of the k best candidates is a sighting
of its track at least ``gap_us`` away; queries whose track has no such sighting are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

K: Final = 10
SECOND_US: Final = 1_000_000
CHUNK: Final = 512  # queries scored at once: memory (chunk x pool) stays bounded


@dataclass(frozen=True)
class TrackRecall:
    """Mean same-track recall@k over the measured queries, with how many were measured."""

    recall: float  # NaN when no query was measured
    measured: int
    skipped: int


def same_track_recall(
    queries: NDArray[np.floating],
    stored: NDArray[np.floating],
    tracks: NDArray[np.integer],
    times_us: NDArray[np.integer] | None = None,
    gap_us: int = SECOND_US,
    k: int = K,
) -> TrackRecall:
    """Same-track recall@k of ``queries[i]`` (row i's query vector) against ``stored`` (the
    pool's vectors as the index holds them; row i is the same crop as ``queries[i]``).

    ``tracks``: a track id per row; ``times_us``: capture times (None: every other sighting
    of the track counts, whatever its time). Scores are cosines (``stored`` rows are
    normalised here, as a decoded code is not unit length).
    """
    q = np.asarray(queries, np.float32)
    s = np.asarray(stored, np.float32)
    t = np.asarray(tracks, np.int64)
    n = len(q)
    if not (s.shape == q.shape and q.ndim == 2 and len(t) == n):
        raise ValueError(
            f"queries {q.shape}, stored {s.shape} and tracks ({len(t)},) must describe the "
            "same rows"
        )
    ts = None if times_us is None else np.asarray(times_us, np.int64)
    if ts is not None and len(ts) != n:
        raise ValueError(f"times_us has {len(ts)} rows, the pool {n}")
    s = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    hits = measured = 0
    for lo in range(0, n, CHUNK):
        rows = np.arange(lo, min(lo + CHUNK, n))
        same = t[rows, None] == t[None, :]
        far = np.ones_like(same) if ts is None else np.abs(ts[rows, None] - ts[None, :]) >= gap_us
        own = rows[:, None] == np.arange(n)[None, :]
        far_sightings = same & far & ~own
        candidates = ~own & (~same | far)
        wanted = far_sightings.any(axis=1)
        if not wanted.any():
            continue
        scores = np.asarray(q[rows[wanted]] @ s.T, np.float64)
        allowed = candidates[wanted]
        scores[~allowed] = -np.inf
        k_eff = min(k, n)
        best = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        found = np.take_along_axis(far_sightings[wanted], best, axis=1)
        found &= np.isfinite(np.take_along_axis(scores, best, axis=1))
        hits += int(found.any(axis=1).sum())
        measured += int(wanted.sum())
    recall = hits / measured if measured else float("nan")
    return TrackRecall(recall, measured, n - measured)
