"""What the projector needs of a :class:`~shared.messages.TrackSummary`.

A summary's path points become sightings (detection rows) flagged ``path_point``, so every
reader of sightings (the API, the analytics, the describer) sees the track's path; a reader
that needs a box between two points interpolates it (:mod:`cloud.catalog_paths`). A summary
sent again (the same points under another seq, after a spool reset) must not store its points
twice: :func:`summary_times_stored` reads the path points the catalog already holds of the
summarised tracks, once per batch (the projector's caches cover the common case, this the
rest).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from sqlalchemy import Connection, bindparam, select

from cloud.schema import detections
from shared.geometry import Box
from shared.messages import TrackSummary

_IN_CHUNK: Final = 500

_PATH_POINTS_OF = select(detections.c.track_id, detections.c.ts_us).where(
    detections.c.track_id.in_(bindparam("ids", expanding=True)),
    detections.c.path_point,
)


class _Cached(Protocol):
    pk: int | None


def best_class(votes: Mapping[int, int]) -> int | None:
    """The majority class (the lowest id among equals), None without votes."""
    return min(votes, key=lambda c: (-votes[c], c)) if votes else None


def summary_points(summary: TrackSummary) -> list[tuple[int, Box]]:
    """Each path point's capture time (us) and box."""
    return [
        (ts, p.box) for ts, p in zip(summary.point_times_us(), summary.path.points, strict=True)
    ]


def summary_times_stored(
    conn: Connection,
    cached: Mapping[tuple[int, int], _Cached],
    work: Iterable[tuple[Any, Any, Any, int]],
) -> set[tuple[int, int]]:
    """(track id, ts) of the path points already stored for the tracks that the summaries in
    ``work`` (the projector's (edge, space, item, camera) list) continue: the cached track of
    their (camera, tracker id), where it has a row."""
    ids: set[int] = set()
    for _, _, item, camera in work:
        msg = item.message
        if isinstance(msg, TrackSummary) and msg.path.points:
            st = cached.get((camera, msg.track_id))
            if st is not None and st.pk is not None:
                ids.add(st.pk)
    found: dict[int, set[int]] = defaultdict(set)
    ordered = sorted(ids)
    for start in range(0, len(ordered), _IN_CHUNK):
        for track_id, ts in conn.execute(
            _PATH_POINTS_OF, {"ids": ordered[start : start + _IN_CHUNK]}
        ):
            found[int(track_id)].add(int(ts))
    return {(track, ts) for track, times in found.items() for ts in times}
