"""From received messages to catalog rows, inside the caller's transaction.

One :class:`Projector` lives in the single ingest writer. It keeps small caches (camera ids,
open tracks, recent boxes) so that the common message costs no extra query; a failed
transaction must call :meth:`Projector.forget` because the caches may then be ahead of the
database.

Rules:

- **Tracks** (:mod:`cloud.project_tracks`): a tracker id seen on a camera continues the track it
  last belonged to when the new sighting is within ``track_gap_us`` of it (or, for a track that
  already ended, inside its time span: messages arrive out of order, by priority); otherwise it
  opens a new track (tracker ids restart with the edge). ``TrackEnd`` closes the track with its
  class votes and path.
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
from sqlalchemy import Connection, bindparam, select, update

from cloud.project_summary import apply_summary, new_path_points, summary_times_stored
from cloud.project_tracks import CachedTrack, TrackCache
from cloud.row_ids import allocate_ids
from cloud.schema import bulk_insert, cameras, detections, embeddings, frame_counts
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


class _Lru(OrderedDict[tuple[int, int, int], int]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: tuple[int, int, int], value: int) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class Projector:
    def __init__(
        self,
        codecs: CodecSet,
        track_gap_us: int = 30_000_000,
        recent_boxes: int = 50_000,
        max_tracks: int = 200_000,
    ) -> None:
        self.codecs = codecs
        self._cameras: dict[tuple[str, str], int] = {}
        self.tracks = TrackCache(track_gap_us, max_tracks)
        # (camera id, tracker id, ts) -> detection id, for box rows and embedding rows
        self._boxes = _Lru(recent_boxes)
        self._embedded = _Lru(recent_boxes)

    def forget(self) -> None:
        """Drop the caches (after a rolled-back transaction)."""
        self._cameras.clear()
        self.tracks.forget()
        self._boxes.clear()
        self._embedded.clear()

    def forget_edge(self, edge_id: str) -> None:
        """Drop what is cached of one edge's tracks and sightings: another replica stored
        frames of this edge since this one last did (:func:`cloud.journal.row_version`), so
        the cached spans and ends may be stale and must be read again."""
        cams = {cam for (edge, _), cam in self._cameras.items() if edge == edge_id}
        self.tracks.forget_cameras(cams)
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
        track_of: list[CachedTrack | None] = []  # per row
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
        self.tracks.load(conn, wanted)
        stored = summary_times_stored(conn, self.tracks.cached, work)  # path points stored

        def seen(key: tuple[int, int, int]) -> bool:  # a sighting at that time is stored
            return key in self._embedded or key in self._boxes or key in batch_keys

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
                    track_of.append(self.tracks.track(camera, local, ts, cls) if local else None)
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
                track_of.append(self.tracks.track(camera, msg.track_id, ts, msg.class_id))
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
                self.tracks.end(camera, msg)
            elif isinstance(msg, TrackSummary):
                st = apply_summary(self.tracks, camera, msg)
                for key, box in new_path_points(msg, camera, st, stored, seen):
                    batch_keys[key] = len(rows)
                    track_of.append(st)
                    row = _row(edge_id, item.seq, camera, key[2], st.class_id or 0, 0.0, box, False)
                    row["path_point"] = True
                    rows.append(row)
                    keys.append(key)
        written = self.tracks.flush(conn, now_us)
        sighted = {o.pk for o in track_of if o is not None and o.pk is not None} - written
        if sighted:
            self.tracks.stamp(conn, sighted, now_us)
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
