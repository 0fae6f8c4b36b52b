"""Same-track recall@10 of the embeddings a strategy sent, as a ratio to f32, two ways.

The cloud's index holds the embeddings a strategy sent (decoded from their codes, searched by
cosine). Both measures use :func:`sim.recall_metrics.top_k` and count a hit when one of the
10 nearest is another sighting of the query's own track at least ``gap_s`` away in capture
time (the own track's sightings closer than that are removed from the candidates: near-copies
of the query say nothing); queries without such a sighting are skipped and counted. Each is
the codec's recall divided by the same search done with the encoder's f32 vectors, so what is
measured is what the code loses, on the same queries and the same candidates.

- **fresh** (the headline, ``track_r10_ratio``): the queries are the edge's own full-rate
  crops of the same frames (:mod:`sim.queries`, f32 from the encoder, sampled every few
  frames): a search by an image of that road user, as ``semcom bench fidelity --queries f32``.
  The index side is the decoded codes (codec) or the f32 originals of the same sent crops.
  Every track the cloud heard of can be found, so it is defined for every preset.
- **stored** (``stored_r10_ratio``): the queries are the sent embeddings themselves (decoded
  vs decoded, and f32 vs f32), as ``semcom bench fidelity``'s default: a stored sighting
  searched against the others. Undefined when no track has two sent embeddings ``gap_s``
  apart, which a lean preset avoids by design (a drift re-send is one whose appearance moved).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.recall_metrics import K, Pool, per_query, summarise, top_k, unit_rows

F32 = NDArray[np.float32]
GAP_S = 1.0


@dataclass(frozen=True)
class SentVector:
    """One embedding the cloud holds: its track, class, time, decoded code and the f32 original."""

    track_id: int
    class_id: int
    t_s: float
    decoded: F32
    original: F32 | None


@dataclass(frozen=True)
class Queries:
    """Fresh sightings: f32 vectors of the edge's crops, their track (the policy's id) and time."""

    vectors: F32
    tracks: NDArray[np.int64]
    times_s: NDArray[np.float64]

    def __post_init__(self) -> None:
        if not len(self.vectors) == len(self.tracks) == len(self.times_s):
            raise ValueError(
                f"query arrays differ in length: vectors {len(self.vectors)}, "
                f"tracks {len(self.tracks)}, times {len(self.times_s)}"
            )


@dataclass(frozen=True)
class Recall:
    """One measure: the codec's and f32's recall, their ratio, queries measured and skipped;
    ``ci95``: the ratio's 95 % interval over tracks (bootstrap), where computed."""

    ratio: float | None
    codec: float | None
    f32: float | None
    queries: int
    skipped: int
    ci95: tuple[float, float] | None = None


NONE = Recall(None, None, None, 0, 0)
BOOTSTRAP = 1000
"""Resamples of the ratio's interval. The queries of one track are not independent (its
crops look alike), so whole tracks are drawn with replacement: on one short clip of ~60
tracks the interval is several points wide, and a ratio within it of a target is not a miss
or a pass the clip can tell apart."""


def track_interval(
    codec_hits: NDArray[np.bool_],
    f32_hits: NDArray[np.bool_],
    tracks: NDArray[np.int64],
    resamples: int = BOOTSTRAP,
    seed: int = 0,
) -> tuple[float, float] | None:
    """95 % bootstrap interval of ``mean(codec_hits) / mean(f32_hits)``, drawing tracks."""
    ids, inverse = np.unique(tracks, return_inverse=True)
    if len(ids) < 2:
        return None
    n = len(ids)
    codec_per = np.bincount(inverse, codec_hits.astype(np.float64), n)
    f32_per = np.bincount(inverse, f32_hits.astype(np.float64), n)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, (resamples, n))
    f32_sum = f32_per[draws].sum(axis=1)
    ok = f32_sum > 0
    if not ok.any():
        return None
    ratios = codec_per[draws].sum(axis=1)[ok] / f32_sum[ok]
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def fresh_recall(
    vectors: Sequence[SentVector], queries: Queries | None, gap_s: float = GAP_S, k: int = K
) -> Recall:
    """Fresh crops searched against the sent embeddings (decoded, and their f32 originals)."""
    if queries is None or not len(queries.vectors) or not vectors:
        return NONE
    if any(v.original is None for v in vectors):
        return NONE
    tracks = np.asarray([v.track_id for v in vectors], np.int64)
    times = np.asarray([v.t_s for v in vectors], np.float64)
    same = queries.tracks[:, None] == tracks[None, :]
    far = np.abs(queries.times_s[:, None] - times[None, :]) >= gap_s
    allowed = ~same | far
    targets = same & far
    measured = targets.any(axis=1)
    if not measured.any():
        return Recall(None, None, None, 0, len(queries.vectors))
    q = unit_rows(queries.vectors[measured])
    allowed, targets = allowed[measured], targets[measured]
    decoded = unit_rows(np.stack([v.decoded for v in vectors]))
    originals = unit_rows(np.stack([v.original for v in vectors if v.original is not None]))

    def hits(index: F32) -> NDArray[np.bool_]:
        best = top_k(q, index, allowed, k)
        hit = np.take_along_axis(targets, np.where(best >= 0, best, 0), axis=1) & (best >= 0)
        return np.asarray(hit.any(axis=1))

    codec_hits, f32_hits = hits(decoded), hits(originals)
    codec, f32 = float(codec_hits.mean()), float(f32_hits.mean())
    ratio = codec / f32 if f32 > 0 else None
    ci = track_interval(codec_hits, f32_hits, queries.tracks[measured])
    return Recall(ratio, codec, f32, int(measured.sum()), int((~measured).sum()), ci)


def stored_recall(vectors: Sequence[SentVector], gap_s: float = GAP_S) -> Recall:
    """The sent embeddings searched against each other (decoded vs decoded, f32 vs f32)."""
    if len(vectors) < 2 or any(v.original is None for v in vectors):
        return NONE
    originals = np.stack([v.original for v in vectors if v.original is not None])
    decoded = unit_rows(np.stack([v.decoded for v in vectors]))  # the index searches by cosine
    pool = Pool(
        originals.astype(np.float32),
        np.asarray([v.track_id for v in vectors], np.int64),
        np.asarray([v.class_id for v in vectors], np.int64),
        np.asarray([round(v.t_s * 1e6) for v in vectors], np.int64),
    )
    gap_us = round(gap_s * 1e6)
    codec = summarise(per_query(pool, decoded, decoded, gap_us=gap_us))
    if codec.track_queries == 0:
        return Recall(None, None, None, 0, codec.track_skipped)
    f32 = summarise(per_query(pool, pool.vectors, pool.vectors, gap_us=gap_us))
    ratio = codec.track_r10 / f32.track_r10 if f32.track_r10 > 0 else None
    return Recall(ratio, codec.track_r10, f32.track_r10, codec.track_queries, codec.track_skipped)
