"""What a :class:`~shared.messages.TrackSummary` does to the catalog, for the projector.

A summary sets its track's span, frames and class votes (the whole track so far: a later
summary supersedes an earlier one's counts), closing it when final (:func:`apply_summary`).
Its path points become sightings (detection rows) flagged ``path_point``, so every
reader of sightings (the API, the analytics, the describer) sees the track's path; a reader
that needs a box between two points interpolates it (:mod:`cloud.catalog_paths`). A summary
sent again (the same points under another seq, after a spool reset) must not store its points
twice: :func:`summary_times_stored` reads the path points the catalog already holds of the
summarised tracks, once per batch (the projector's caches cover the common case, this the
rest).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Protocol

from sqlalchemy import Connection, bindparam, select

from cloud.project_tracks import CachedTrack, TrackCache
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


def apply_summary(cache: TrackCache, camera: int, summary: TrackSummary) -> CachedTrack:
    """The track a summary describes, with its span, frames and votes set from it (the
    whole track so far: a later summary supersedes an earlier one) and closed if final.
    Its ``path`` stays as it is: the path is in the flagged sightings."""
    best = best_class(summary.class_votes)
    st = cache.track(camera, summary.track_id, summary.last_seen_us, best or 0)
    st.first = min(st.first, summary.first_seen_us)
    st.last = max(st.last, summary.last_seen_us)
    st.frames = max(st.frames or 0, summary.frames)
    st.ended = st.ended or summary.final
    st.votes = {str(k): v for k, v in summary.class_votes.items()}
    if best is not None:
        st.class_id = best
    cache.touch(st)
    return st


def new_path_points(
    summary: TrackSummary,
    camera: int,
    track: CachedTrack,
    stored: set[tuple[int, int]],
    seen: Callable[[tuple[int, int, int]], bool],
) -> Iterator[tuple[tuple[int, int, int], Box]]:
    """The summary's path points to store as sightings: (camera, tracker id, ts) and box of
    each point at a time where ``seen`` knows no sighting of it yet (asked lazily: the caller
    may add each point before the next is asked about) and not ``stored`` before (a summary
    re-sent under another seq, :func:`summary_times_stored`)."""
    for ts, box in summary_points(summary):
        key = (camera, summary.track_id, ts)
        if seen(key):
            continue  # a sighting at that time is stored already
        if track.pk is not None and (track.pk, ts) in stored:
            continue  # re-sent (a spool that was reset): stored before
        yield key, box


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
