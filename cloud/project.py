"""From received messages to catalog rows, inside the caller's transaction.

One :class:`Projector` lives in the single ingest writer. It keeps small caches (camera ids,
open tracks, recent boxes) so that the common message costs no extra query; a failed
transaction must call :meth:`Projector.forget` because the caches may then be ahead of the
database.

Rules:

- **Tracks**: a tracker id seen on a camera continues the track it last belonged to when the new
  sighting is within ``track_gap_us`` of it (or, for a track that already ended, inside its
  time span: messages arrive out of order, by priority); otherwise it opens a new track (tracker
  ids restart with the edge). ``TrackEnd`` closes the track with its class votes and path.
- **Track summaries** (:mod:`cloud.project_summary`): a ``TrackSummary`` sets the track's
  span, frames and class votes (closing it when final), and stores its path points as
  sightings flagged ``path_point`` (boxes between them are interpolated when read).
- **One row per sighting**: a box from a per-frame ``Detections`` message and the ``Embedding``
  sent for the same object and frame (same camera, tracker id, time) share one detection row,
  whatever order they arrive in, as long as both are recent (an LRU of ``recent_boxes``).
- **Vectors**: every embedding is stored encoded (the source of truth), and also decoded here
  into a :class:`NewVectors` batch for the index, so the index never re-reads the catalog.
- **Change stamp**: a track inserted, changed, or given a sighting (even a late box inside its
  span) gets ``updated_us`` = the transaction's time: the analytics runner's change feed.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Table, bindparam, func, select, text, update

from cloud.project_summary import best_class, summary_points, summary_times_stored
from cloud.schema import bulk_insert, cameras, detections, embeddings, frame_counts, tracks
from shared.geometry import Box
from shared.messages import Detections, Embedding, FrameCounts, Message, TrackEnd, TrackSummary
from shared.vectors import CodecSet


@dataclass(frozen=True)
class Received:
    """A new (not repeated) message of one edge, with its journal coordinates."""

    seq: int
    capture_ts_us: int
    message: Message


@dataclass
class NewVectors:
    """Decoded embeddings of one space, ready for the index (ids are detection ids)."""

    space: str
    ids: list[int] = field(default_factory=list)
    vectors: list[NDArray[np.float32]] = field(default_factory=list)
    cameras: list[int] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    ts_us: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, other: NewVectors) -> None:
        self.ids += other.ids
        self.vectors += other.vectors
        self.cameras += other.cameras
        self.classes += other.classes
        self.ts_us += other.ts_us

    def arrays(  # ids, vectors, cameras, classes, ts
        self,
    ) -> tuple[
        NDArray[np.int64],
        NDArray[np.float32],
        NDArray[np.int32],
        NDArray[np.int32],
        NDArray[np.int64],
    ]:
        return (
            np.asarray(self.ids, np.int64),
            np.concatenate(self.vectors).astype(np.float32, copy=False)
            if self.vectors
            else np.zeros((0, 0), np.float32),
            np.asarray(self.cameras, np.int32),
            np.asarray(self.classes, np.int32),
            np.asarray(self.ts_us, np.int64),
        )


@dataclass(frozen=True)
class Space:
    """An embedding space (one encoder): its catalog id and name."""

    id: int
    name: str


@dataclass(slots=True)
class _Sighting:
    camera_id: int
    ts_us: int
    message: Embedding
    space: Space  # the embedding space of its edge
    detection_id: int = 0


#: One edge's new messages for :meth:`Projector.apply_many`: (edge id, its space, messages).
EdgeBatch = tuple[str, Space, Sequence[Received]]


@dataclass(slots=True)
class _Track:
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


class _Lru(OrderedDict[tuple[int, int, int], int]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: tuple[int, int, int], value: int) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


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


class Projector:
    def __init__(
        self,
        codecs: CodecSet,
        track_gap_us: int = 30_000_000,
        recent_boxes: int = 50_000,
        max_tracks: int = 200_000,
    ) -> None:
        self.codecs = codecs
        self.track_gap_us = track_gap_us
        self._cameras: dict[tuple[str, str], int] = {}
        self._tracks: dict[tuple[int, int], _Track] = {}
        self._created: list[_Track] = []  # new in this transaction, in order of creation
        self._dirty: list[_Track] = []  # changed in this transaction
        self.max_tracks = max_tracks
        # (camera id, tracker id, ts) -> detection id, for box rows and embedding rows
        self._boxes = _Lru(recent_boxes)
        self._embedded = _Lru(recent_boxes)

    def forget(self) -> None:
        """Drop the caches (after a rolled-back transaction)."""
        self._cameras.clear()
        self._tracks.clear()
        self._created.clear()
        self._dirty.clear()
        self._boxes.clear()
        self._embedded.clear()

    def forget_edge(self, edge_id: str) -> None:
        """Drop what is cached of one edge's tracks and sightings: another replica stored
        frames of this edge since this one last did (:func:`cloud.journal.row_version`), so
        the cached spans and ends may be stale and must be read again."""
        cams = {cam for (edge, _), cam in self._cameras.items() if edge == edge_id}
        self._tracks = {key: st for key, st in self._tracks.items() if key[0] not in cams}
        for lru in (self._boxes, self._embedded):
            for key in [k for k in lru if k[0] in cams]:
                del lru[key]

    # ---------------------------------------------------------------- lookups

    def camera_id(self, conn: Connection, edge_id: str, name: str, now_us: int) -> int:
        key = (edge_id, name)
        found = self._cameras.get(key)
        if found is not None:
            return found
        row = conn.execute(
            select(cameras.c.id).where(cameras.c.edge_id == edge_id, cameras.c.name == name)
        ).scalar()
        if row is None:
            row = conn.execute(
                cameras.insert()
                .values(edge_id=edge_id, name=name, first_seen_us=now_us)
                .returning(cameras.c.id)
            ).scalar_one()
        self._cameras[key] = int(row)
        return int(row)

    def _load_tracks(self, conn: Connection, keys: set[tuple[int, int]]) -> None:
        """Bring the latest row of each (camera, tracker id) not cached into the cache."""
        missing: dict[int, set[int]] = defaultdict(set)
        for camera, local in keys:
            if (camera, local) not in self._tracks:
                missing[camera].add(local)
        for camera, locals_ in missing.items():
            found = conn.execute(_TRACKS_OF, {"camera": camera, "locals": sorted(locals_)}).all()
            for pk, local, first, last, ended, cls in found:  # ascending: the latest wins
                self._tracks[(camera, int(local))] = _Track(
                    int(pk), camera, int(local), int(first), int(last), bool(ended), cls
                )

    def _track(self, camera: int, local: int, ts: int, class_id: int) -> _Track:
        """The track a sighting belongs to (a new, not yet inserted one if none)."""
        key = (camera, local)
        st = self._tracks.get(key)
        if st is not None:
            if st.ended and st.first <= ts <= st.last:
                return st
            if not st.ended and st.first - self.track_gap_us <= ts <= st.last + self.track_gap_us:
                if ts < st.first or ts > st.last:
                    st.first, st.last = min(st.first, ts), max(st.last, ts)
                    self._touch(st)
                return st
        st = _Track(None, camera, local, ts, ts, False, class_id)
        self._tracks[key] = st
        self._created.append(st)
        return st

    def _end_track(self, camera: int, end: TrackEnd) -> None:
        votes = dict(end.class_votes)
        best = max(votes, key=lambda c: votes[c]) if votes else None
        st = self._track(camera, end.track_id, end.last_seen_us, best or 0)
        st.first, st.last = min(st.first, end.first_seen_us), max(st.last, end.last_seen_us)
        st.ended, st.frames = True, end.frames
        self._touch(st)
        st.votes = {str(k): v for k, v in votes.items()}
        st.path = [[b.x1, b.y1, b.x2, b.y2] for b in end.path]
        if best is not None:
            st.class_id = best

    def _summarise(self, camera: int, summary: TrackSummary) -> _Track:
        """The track a summary describes, with its span, frames and votes set from it (the
        whole track so far: a later summary supersedes an earlier one) and closed if final.
        Its ``path`` stays as it is: the path is in the flagged sightings."""
        best = best_class(summary.class_votes)
        st = self._track(camera, summary.track_id, summary.last_seen_us, best or 0)
        st.first = min(st.first, summary.first_seen_us)
        st.last = max(st.last, summary.last_seen_us)
        st.frames = max(st.frames or 0, summary.frames)
        st.ended = st.ended or summary.final
        st.votes = {str(k): v for k, v in summary.class_votes.items()}
        if best is not None:
            st.class_id = best
        self._touch(st)
        return st

    def _flush_tracks(self, conn: Connection, new: list[_Track], now_us: int) -> set[int]:
        """Insert the new tracks (ids in order) and update the changed ones, stamping
        ``updated_us`` with ``now_us``; returns the ids written."""
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
                st.votes = st.path = None  # written: not needed again (see _Track)
        dirty = [st for st in self._dirty if st.dirty and st.pk is not None]
        self._dirty = []
        if dirty:
            conn.execute(
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
                ),
                [
                    {
                        "pk": st.pk,
                        "first": st.first,
                        "last": st.last,
                        "is_ended": st.ended,
                        "n_frames": st.frames,
                        "cls": st.class_id,
                        "votes": st.votes,
                        "box_path": st.path,
                        "now": now_us,
                    }
                    for st in dirty
                ],
            )
            for st in dirty:
                st.dirty = False
                st.votes = st.path = None
            written.update(st.pk for st in dirty if st.pk is not None)
        if len(self._tracks) > self.max_tracks:  # keep the newest half; the rest reload on use
            keep = list(self._tracks.items())[len(self._tracks) // 2 :]
            self._tracks = dict(keep)
        return written

    @staticmethod
    def _stamp(conn: Connection, sighted: set[int], now_us: int) -> None:
        """Stamp ``updated_us`` of tracks that got a sighting without another change (a late
        box inside a track's span): the analytics runner must see them again."""
        ids = sorted(sighted)
        for start in range(0, len(ids), 500):
            conn.execute(_STAMP, {"ids": ids[start : start + 500], "now": now_us})

    def _touch(self, st: _Track) -> None:
        if not st.dirty:
            st.dirty = True
            self._dirty.append(st)

    # ---------------------------------------------------------------- writing

    def apply(
        self, conn: Connection, edge_id: str, space: Space, items: Sequence[Received], now_us: int
    ) -> NewVectors:
        """Write the catalog rows of ``items`` (new messages of one edge)."""
        got = self.apply_many(conn, [(edge_id, space, items)], now_us)
        return got[0] if got else NewVectors(space.name)

    def apply_many(
        self, conn: Connection, batches: Sequence[EdgeBatch], now_us: int
    ) -> list[NewVectors]:
        """Write the catalog rows of several edges' new messages (a group commit's) at once:
        each kind of row in one statement for all of them, not one per edge (on a busy cloud
        that was most of the writer's statements). Returns the vectors per space."""
        rows: list[dict[str, object]] = []
        keys: list[tuple[int, int, int] | None] = []
        embedded: list[tuple[int, _Sighting]] = []  # (index into rows, sighting)
        attach: list[_Sighting] = []  # embeddings of a box row already stored
        counts: list[dict[str, int]] = []
        batch_keys: dict[tuple[int, int, int], int] = {}  # sightings of this batch -> row
        track_of: list[_Track | None] = []  # per row
        wanted: set[tuple[int, int]] = set()
        work: list[tuple[str, Space, Received, int]] = []  # with the message's camera id
        for edge_id, space, items in batches:  # one query per camera for the tracks named
            for item in items:
                msg = item.message
                if isinstance(msg, (Detections, Embedding, TrackEnd, FrameCounts, TrackSummary)):
                    camera = self.camera_id(conn, edge_id, msg.camera, now_us)
                    work.append((edge_id, space, item, camera))
                if isinstance(msg, Detections):
                    wanted.update((camera, t) for t in msg.track_ids if t)
                elif isinstance(msg, (Embedding, TrackEnd, TrackSummary)):
                    wanted.add((camera, msg.track_id))
        self._load_tracks(conn, wanted)
        stored = summary_times_stored(conn, self._tracks, work)  # path points already stored
        for edge_id, space, item, camera in work:
            msg, ts = item.message, item.capture_ts_us
            if isinstance(msg, Detections):
                for box, cls, conf, local in zip(
                    msg.boxes, msg.class_ids, msg.confidences, msg.track_ids, strict=True
                ):
                    key = (camera, local, ts) if local else None
                    if key is not None and (key in self._embedded or key in batch_keys):
                        continue  # the embedding's row is this sighting
                    if key is not None:
                        batch_keys[key] = len(rows)
                    track_of.append(self._track(camera, local, ts, cls) if local else None)
                    rows.append(_row(edge_id, item.seq, camera, ts, cls, conf, box, False))
                    keys.append(key)
            elif isinstance(msg, Embedding):
                key = (camera, msg.track_id, ts)
                if key in batch_keys:  # its box came earlier in this batch: share the row
                    n = batch_keys[key]
                    if not rows[n]["has_embedding"]:
                        rows[n]["has_embedding"] = True
                        embedded.append((n, _Sighting(camera, ts, msg, space)))
                    continue
                box_row = self._boxes.get(key)
                if box_row is not None:
                    attach.append(_Sighting(camera, ts, msg, space, box_row))
                    continue
                track_of.append(self._track(camera, msg.track_id, ts, msg.class_id))
                batch_keys[key] = len(rows)
                embedded.append((len(rows), _Sighting(camera, ts, msg, space)))
                rows.append(
                    _row(
                        edge_id,
                        item.seq,
                        camera,
                        ts,
                        msg.class_id,
                        msg.confidence,
                        msg.box,
                        True,
                    )
                )
                keys.append(key)
            elif isinstance(msg, FrameCounts):
                counts += [
                    {"camera_id": camera, "ts_us": ts, "class_id": c, "count": n}
                    for c, n in msg.counts.items()
                ]
            elif isinstance(msg, TrackEnd):
                self._end_track(camera, msg)
            elif isinstance(msg, TrackSummary):
                st = self._summarise(camera, msg)
                for ts, box in summary_points(msg):
                    key = (camera, msg.track_id, ts)
                    if key in self._embedded or key in self._boxes or key in batch_keys:
                        continue  # a sighting at that time is stored already
                    if st.pk is not None and (st.pk, ts) in stored:
                        continue  # re-sent (a spool that was reset): stored before
                    batch_keys[key] = len(rows)
                    track_of.append(st)
                    row = _row(edge_id, item.seq, camera, ts, st.class_id or 0, 0.0, box, False)
                    row["path_point"] = True
                    rows.append(row)
                    keys.append(key)
        written = self._flush_tracks(conn, self._created, now_us)
        self._created = []
        sighted = {o.pk for o in track_of if o is not None and o.pk is not None} - written
        if sighted:
            self._stamp(conn, sighted, now_us)
        for row, owner in zip(rows, track_of, strict=True):
            row["track_id"] = owner.pk if owner is not None else None
        ids: list[int] = []
        if rows:
            ids = allocate_ids(conn, detections, len(rows))
            for pk, row in zip(ids, rows, strict=True):
                row["id"] = pk
            bulk_insert(conn, detections, rows)
        for key, pk, row in zip(keys, ids, rows, strict=True):
            if key is not None:
                (self._embedded if row["has_embedding"] else self._boxes).put(key, pk)
        if counts:
            conn.execute(frame_counts.insert(), counts)
        if attach:
            conn.execute(
                update(detections)
                .where(detections.c.id == bindparam("pk"))
                .values(has_embedding=True),
                [{"pk": a.detection_id} for a in attach],
            )
            for a in attach:
                key = (a.camera_id, a.message.track_id, a.ts_us)
                self._boxes.pop(key, None)
                self._embedded.put(key, a.detection_id)
        for n, a in embedded:
            a.detection_id = ids[n]
        return self._embeddings(conn, [a for _, a in embedded] + attach)

    def _embeddings(self, conn: Connection, found: list[_Sighting]) -> list[NewVectors]:
        """Embedding rows of every sighting in one statement; decoded vectors per space."""
        if not found:
            return []
        bulk_insert(
            conn,
            embeddings,
            [
                {
                    "detection_id": a.detection_id,
                    "space_id": a.space.id,
                    "codec": a.message.codec,
                    "reason": int(a.message.reason),
                    "code": a.message.code,
                }
                for a in found
            ],
        )
        groups: dict[tuple[str, int], list[_Sighting]] = defaultdict(list)
        for a in found:
            groups[(a.space.name, a.message.codec)].append(a)
        out: dict[str, NewVectors] = {}
        for (space, fp), group in groups.items():
            codes = np.frombuffer(b"".join(a.message.code for a in group), np.uint8)
            vectors = self.codecs.resolve(fp).decode(codes.reshape(len(group), -1))
            got = out.setdefault(space, NewVectors(space))
            got.ids += [a.detection_id for a in group]
            got.vectors.append(vectors)
            got.cameras += [a.camera_id for a in group]
            got.classes += [a.message.class_id for a in group]
            got.ts_us += [a.ts_us for a in group]
        return list(out.values())


def allocate_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """``n`` new primary keys of ``table``, in increasing order, for a plain executemany.

    (An INSERT ... RETURNING that keeps the parameter order runs row by row on SQLite: ten
    times slower.) PostgreSQL draws them from the column's sequence (safe with concurrent
    writers); SQLite continues after the largest id, which is safe because the cloud has
    one writer and SQLite one write transaction at a time.
    """
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": n},
        ).scalars()
        return sorted(int(i) for i in rows)
    top = conn.execute(select(func.max(table.c.id))).scalar()
    start = int(top or 0) + 1
    return list(range(start, start + n))


def _row(
    edge_id: str,
    seq: int,
    camera: int,
    ts: int,
    class_id: int,
    confidence: float,
    box: Box,
    has_embedding: bool,
) -> dict[str, object]:
    return {
        "camera_id": camera,
        "track_id": None,  # set once the track rows exist
        "ts_us": ts,
        "class_id": class_id,
        "confidence": float(confidence),
        "x1": box.x1,
        "y1": box.y1,
        "x2": box.x2,
        "y2": box.y2,
        "edge_id": edge_id,
        "seq": seq,
        "has_embedding": has_embedding,
        "path_point": False,
    }
