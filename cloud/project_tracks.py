"""The projector's track cache: which track row a sighting belongs to, and writing the rows.

The single ingest writer keeps the tracks it has seen (camera id, tracker id) -> row, so that
the common message costs no track query. Rules:

- A tracker id seen on a camera continues the track it last belonged to when the new sighting
  is within ``track_gap_us`` of it (or, for a track that already ended, inside its time span:
  messages arrive out of order, by priority); otherwise it opens a new track (tracker ids
  restart with the edge). ``TrackEnd`` closes the track with its class votes and path.
- New tracks are inserted and changed ones updated once per transaction
  (:meth:`TrackCache.flush`), stamping ``updated_us`` with the transaction's time: the
  analytics runner's change feed. A track given only a sighting is stamped too
  (:meth:`TrackCache.stamp`).
- Memory: ~300 B a cached track (a written track keeps no path or votes); over ``max_tracks``
  the oldest half is dropped and reloaded on use.

A failed transaction must call :meth:`TrackCache.forget`: the cache may be ahead of the
database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, update

from cloud.row_ids import allocate_ids
from cloud.schema import tracks
from shared.messages import TrackEnd

#: The rows of one camera's tracks with the given tracker ids, oldest first (built once:
#: an expanding IN spares SQLAlchemy coercing and caching each id anew per statement).
_TRACKS_OF = (
    select(
        tracks.c.id,
        tracks.c.local_id,
        tracks.c.first_seen_us,
        tracks.c.last_seen_us,
        tracks.c.ended,
        tracks.c.class_id,
    )
    .where(
        tracks.c.camera_id == bindparam("camera"),
        tracks.c.local_id.in_(bindparam("locals", expanding=True)),
    )
    .order_by(tracks.c.id)
)
_STAMP = (
    update(tracks)
    .where(tracks.c.id.in_(bindparam("ids", expanding=True)))
    .values(updated_us=bindparam("now"))
)
_UPDATE = (
    update(tracks)
    .where(tracks.c.id == bindparam("pk"))
    .values(
        first_seen_us=bindparam("first"),
        last_seen_us=bindparam("last"),
        ended=bindparam("is_ended"),
        frames=bindparam("n_frames"),
        class_id=bindparam("cls"),
        class_votes=bindparam("votes"),
        path=bindparam("box_path"),
        updated_us=bindparam("now"),
    )
)
_STAMP_CHUNK = 500  # ids per UPDATE ... IN


@dataclass(slots=True)
class CachedTrack:
    """A track's row as the writer knows it; ``pk`` is None until the row is inserted.

    ``votes`` and ``path`` (a TrackEnd's, up to 32 boxes: ~6.7 KB as Python lists) are held only
    until the row is written: the cache keeps up to ``max_tracks`` tracks, most of them ended,
    and with their paths that was up to ~1.3 GB; without, ~300 B per track."""

    pk: int | None
    camera: int
    local: int
    first: int
    last: int
    ended: bool
    class_id: int | None = None
    frames: int | None = None
    votes: dict[str, int] | None = None
    path: list[list[float]] | None = None
    dirty: bool = False

    def values(self) -> dict[str, object]:
        return {
            "camera_id": self.camera,
            "local_id": self.local,
            "class_id": self.class_id,
            "first_seen_us": self.first,
            "last_seen_us": self.last,
            "frames": self.frames,
            "ended": self.ended,
            "class_votes": self.votes,
            "path": self.path,
        }

    def update_values(self, now_us: int) -> dict[str, object]:
        """The bind parameters of ``_UPDATE`` for this track."""
        return {
            "pk": self.pk,
            "first": self.first,
            "last": self.last,
            "is_ended": self.ended,
            "n_frames": self.frames,
            "cls": self.class_id,
            "votes": self.votes,
            "box_path": self.path,
            "now": now_us,
        }


class TrackCache:
    """(camera id, tracker id) -> the latest track of that tracker id, and the tracks created
    or changed in the current transaction."""

    def __init__(self, track_gap_us: int = 30_000_000, max_tracks: int = 200_000) -> None:
        self.track_gap_us = track_gap_us
        self.max_tracks = max_tracks
        self._tracks: dict[tuple[int, int], CachedTrack] = {}
        self._created: list[CachedTrack] = []  # new in this transaction, in order of creation
        self._dirty: list[CachedTrack] = []  # changed in this transaction

    @property
    def cached(self) -> Mapping[tuple[int, int], CachedTrack]:
        """The cached tracks by (camera id, tracker id), oldest first."""
        return self._tracks

    def forget(self) -> None:
        """Drop everything (after a rolled-back transaction)."""
        self._tracks.clear()
        self._created.clear()
        self._dirty.clear()

    def forget_cameras(self, cams: set[int]) -> None:
        """Drop the cached tracks of these cameras (another writer may have changed them)."""
        self._tracks = {key: st for key, st in self._tracks.items() if key[0] not in cams}

    def load(self, conn: Connection, keys: set[tuple[int, int]]) -> None:
        """Bring the latest row of each (camera, tracker id) not cached into the cache."""
        missing: dict[int, set[int]] = defaultdict(set)
        for camera, local in keys:
            if (camera, local) not in self._tracks:
                missing[camera].add(local)
        for camera, locals_ in missing.items():
            found = conn.execute(_TRACKS_OF, {"camera": camera, "locals": sorted(locals_)}).all()
            for pk, local, first, last, ended, cls in found:  # ascending: the latest wins
                self._tracks[(camera, int(local))] = CachedTrack(
                    int(pk), camera, int(local), int(first), int(last), bool(ended), cls
                )

    def track(self, camera: int, local: int, ts: int, class_id: int) -> CachedTrack:
        """The track a sighting belongs to (a new, not yet inserted one if none)."""
        key = (camera, local)
        st = self._tracks.get(key)
        if st is not None:
            if st.ended and st.first <= ts <= st.last:
                return st
            if not st.ended and st.first - self.track_gap_us <= ts <= st.last + self.track_gap_us:
                if ts < st.first or ts > st.last:
                    st.first, st.last = min(st.first, ts), max(st.last, ts)
                    self.touch(st)
                return st
        st = CachedTrack(None, camera, local, ts, ts, False, class_id)
        self._tracks[key] = st
        self._created.append(st)
        return st

    def end(self, camera: int, end: TrackEnd) -> None:
        """Close the track a ``TrackEnd`` names, with its span, frames, votes and path."""
        votes = dict(end.class_votes)
        best = max(votes, key=lambda c: votes[c]) if votes else None
        st = self.track(camera, end.track_id, end.last_seen_us, best or 0)
        st.first, st.last = min(st.first, end.first_seen_us), max(st.last, end.last_seen_us)
        st.ended, st.frames = True, end.frames
        self.touch(st)
        st.votes = {str(k): v for k, v in votes.items()}
        st.path = [[b.x1, b.y1, b.x2, b.y2] for b in end.path]
        if best is not None:
            st.class_id = best

    def touch(self, st: CachedTrack) -> None:
        """Mark a cached track changed: :meth:`flush` writes it."""
        if not st.dirty:
            st.dirty = True
            self._dirty.append(st)

    def flush(self, conn: Connection, now_us: int) -> set[int]:
        """Insert the tracks created in this transaction (ids in order) and update the changed
        ones, stamping ``updated_us`` with ``now_us``; returns the ids written."""
        new, self._created = self._created, []
        written: set[int] = set()
        if new:
            ids = allocate_ids(conn, tracks, len(new))
            conn.execute(
                tracks.insert(),
                [
                    {"id": pk, **st.values(), "updated_us": now_us}
                    for pk, st in zip(ids, new, strict=True)
                ],
            )
            written.update(ids)
            for st, pk in zip(new, ids, strict=True):
                st.pk, st.dirty = pk, False
                st.votes = st.path = None  # written: not needed again (see CachedTrack)
        dirty = [st for st in self._dirty if st.dirty and st.pk is not None]
        self._dirty = []
        if dirty:
            conn.execute(_UPDATE, [st.update_values(now_us) for st in dirty])
            for st in dirty:
                st.dirty = False
                st.votes = st.path = None
            written.update(st.pk for st in dirty if st.pk is not None)
        if len(self._tracks) > self.max_tracks:  # keep the newest half; the rest reload on use
            keep = list(self._tracks.items())[len(self._tracks) // 2 :]
            self._tracks = dict(keep)
        return written

    @staticmethod
    def stamp(conn: Connection, sighted: set[int], now_us: int) -> None:
        """Stamp ``updated_us`` of tracks that got a sighting without another change (a late
        box inside a track's span): the analytics runner must see them again."""
        ids = sorted(sighted)
        for start in range(0, len(ids), _STAMP_CHUNK):
            conn.execute(_STAMP, {"ids": ids[start : start + _STAMP_CHUNK], "now": now_us})
