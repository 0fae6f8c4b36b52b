"""Similar-detection searches that answer "where else is this object?": one hit per track.

A camera's tracker reports the same object in many frames, so the nearest neighbours of a
detection are mostly its own track in the next frames, and those of an image mostly one
track. By default a search therefore keeps the best-scoring sighting of each track (an
untracked detection is a group of its own) and, from a detection, leaves its own track out.

The index knows nothing of tracks, so k distinct tracks need more than k candidates: the
search over-fetches ``k * FETCH_FACTOR`` nearest detections, maps them to tracks through the
catalog, and asks again for ``FETCH_FACTOR`` times more until k groups are found, the index
has no more matches (it returned fewer than asked), or ``MAX_CANDIDATES`` were fetched. The
index applies the filter, so every candidate matches it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cloud.catalog_records import DetectionRecord
from cloud.index.base import Hit

Grouping = Literal["track", "detection"]

FETCH_FACTOR: Final = 4
"""Candidates fetched per wanted hit in the first round, and the growth between rounds."""
MAX_CANDIDATES: Final = 4096
"""Most nearest detections fetched for one search (a bound on the index's and catalog's work)."""

Fetch = Callable[[int], list[Hit]]
"""The ``n`` nearest detections matching the filter, best first (fewer: no more match)."""
Lookup = Callable[[Sequence[int]], list[DetectionRecord]]
"""Catalog rows of detection ids (ids without a row are left out)."""


@dataclass(frozen=True)
class Exclusion:
    """What a search leaves out: a track, and the query detection itself."""

    track_id: int | None = None
    detection_id: int | None = None

    def drops(self, d: DetectionRecord) -> bool:
        return d.id == self.detection_id or (
            self.track_id is not None and d.track_id == self.track_id
        )


@dataclass(frozen=True)
class GroupedHit:
    score: float  # the best candidate's (cosine)
    detection: DetectionRecord  # the best-scoring candidate of its group
    sightings: int  # candidates of its group among those fetched (1 for group="detection")


@dataclass(frozen=True)
class GroupedResult:
    hits: list[GroupedHit]  # best first, at most k
    candidates: int  # nearest detections fetched from the index in the last round


def nearest_groups(
    fetch: Fetch, lookup: Lookup, k: int, group: Grouping, exclude: Exclusion
) -> GroupedResult:
    """The ``k`` best groups of the nearest candidates, over-fetching as the module says.

    ``group="detection"`` makes every detection its own group (the raw nearest detections,
    still without the excluded ones). Candidates the catalog no longer has (retention just
    deleted them; the index follows shortly) are skipped.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    plain = group == "detection" and exclude == Exclusion()
    n = min(k if plain else k * FETCH_FACTOR, MAX_CANDIDATES)
    records: dict[int, DetectionRecord] = {}
    while True:
        candidates = fetch(n)
        unknown = [h.id for h in candidates if h.id not in records]
        if unknown:
            records.update((d.id, d) for d in lookup(unknown))
        hits = _group(candidates, records, group, exclude)
        if len(hits) >= k or len(candidates) < n or n >= MAX_CANDIDATES:
            return GroupedResult(hits[:k], len(candidates))
        n = min(n * FETCH_FACTOR, MAX_CANDIDATES)


def _group(
    candidates: list[Hit],
    records: dict[int, DetectionRecord],
    group: Grouping,
    exclude: Exclusion,
) -> list[GroupedHit]:
    """Groups in the order of their best candidate (candidates come best first)."""
    best: dict[tuple[str, int], tuple[Hit, DetectionRecord]] = {}
    count: dict[tuple[str, int], int] = {}
    for hit in candidates:
        d = records.get(hit.id)
        if d is None or exclude.drops(d):
            continue
        key = ("track", d.track_id) if group == "track" and d.track_id is not None else ("id", d.id)
        if key not in best:
            best[key] = (hit, d)
        count[key] = count.get(key, 0) + 1
    return [GroupedHit(h.score, d, count[key]) for key, (h, d) in best.items()]
