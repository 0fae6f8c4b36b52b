"""Re-link a new track to a just-lost one: one object, one track id, one first-sight embedding.

The tracker starts a new id whenever it fails to associate a box with a track it holds (an
occlusion, a box that jumped, a detection missed for longer than its buffer). Each such false
new track costs a first-sight embedding and shows the cloud two objects. When the policy is
about to send a new track's first-sight embedding, :meth:`Relinker.match` looks for a confirmed
track that was lost before the new one started and agrees with it on both:

- **position**: the new track's first box centre lies within ``relink_max_offset`` box sides
  (the longer side of the smaller of the two boxes: the lost track's last, the new track's
  first) of where the lost track would be at that time, moving on at the constant velocity
  fitted to its last sightings;
- **appearance**: the cosine similarity of the new crop's embedding (the edge's encoder) and the
  lost track's last sent embedding is at least ``relink_min_cosine``.

Among several candidates the one with the lowest combined cost wins (offset over its tolerance
plus cosine distance over its tolerance). The new tracker id then continues under the lost
track's id (:meth:`Relinker.rename` maps it in every later frame), so no first-sight embedding
is sent and the cloud sees one track. That needs the lost track still open at the policy: the
cloud continues an ended track only inside its span, so a lifetime after its final summary
would be a second track there; the policy holds a lost track while a link may still come
(``EmissionPolicy._relinkable``).

Two tracks seen at the same time are never linked: a candidate must have been last seen before
the new track's first sighting. Should the tracker bring the lost track's own id back later
(while its id is now used by the re-linked track), that id is a different object and is renamed
to ``id + RENAMED_OFFSET``, an id the tracker does not hand out.

Not thread-safe on its own: the policy calls it under its lock (from both of its threads).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from edge.config import PolicyConfig
from edge.detect import FrameBoxes

#: Added to a tracker id whose output id was given to a re-linked track (u32 ids on the wire).
RENAMED_OFFSET: Final = 1 << 31
#: Sightings of a track kept for its velocity (the last ones, one per frame).
VELOCITY_POINTS: Final = 8
#: How long after a new track's first sighting its first-sight embedding may still come (s:
#: ``confirm_frames``, then the encoder's queue); lost tracks are kept the window plus this.
MATCH_DELAY_S: Final = 5.0
#: How long a tracker id's renaming is remembered after it was last seen (s): longer than any
#: tracker buffer, so an id the tracker still holds keeps its name.
ALIAS_MEMORY_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class Sighting:
    """One box of a track: capture time (us), centre and size (px)."""

    ts_us: int
    cx: float
    cy: float
    w: float
    h: float


@dataclass
class _Record:
    """What the relinker knows of one output track id."""

    first: Sighting
    points: deque[Sighting] = field(default_factory=lambda: deque(maxlen=VELOCITY_POINTS))
    vector: NDArray[np.float32] | None = None  # the last sent embedding (unit length)

    @property
    def last(self) -> Sighting:
        return self.points[-1]

    def predict(self, ts_us: int) -> tuple[float, float]:
        """Centre (px) at ``ts_us``, moving on at the velocity fitted to the kept sightings."""
        last = self.last
        t = np.asarray([p.ts_us for p in self.points], np.float64) * 1e-6
        if len(t) < 2 or float(t[-1] - t[0]) <= 0:
            return last.cx, last.cy
        dt = ts_us * 1e-6 - t[-1]
        vx = float(np.polyfit(t - t[-1], [p.cx for p in self.points], 1)[0])
        vy = float(np.polyfit(t - t[-1], [p.cy for p in self.points], 1)[0])
        return last.cx + vx * dt, last.cy + vy * dt


@dataclass(frozen=True, slots=True, eq=False)
class Link:
    """A decision of :meth:`Relinker.match`: ``new_id`` continues ``old_id``."""

    new_id: int
    old_id: int
    offset_sides: float  # distance from the predicted centre, in box sides (the smaller box)
    cosine: float
    gap_s: float  # from the lost track's last sighting to the new track's first
    old_vector: NDArray[np.float32]  # the lost track's last sent embedding


class Relinker:
    """Maps tracker ids to output track ids, re-linking new tracks to just-lost ones."""

    def __init__(self, config: PolicyConfig) -> None:
        self.window_us = round(config.relink_window_s * 1e6)
        self.min_cosine = config.relink_min_cosine
        self.max_offset = config.relink_max_offset
        self._records: dict[int, _Record] = {}  # by output id
        self._alias: dict[int, int] = {}  # tracker id -> output id, where they differ
        self._alias_seen: dict[int, int] = {}  # tracker id -> last seen (us)
        #: the latest links made (a bounded history, for tests and diagnostics)
        self.links: deque[Link] = deque(maxlen=256)

    @property
    def enabled(self) -> bool:
        return self.window_us > 0

    def rename(self, boxes: FrameBoxes, ts_us: int) -> FrameBoxes:
        """The frame's boxes under output ids; records each tracked box's sighting."""
        if not self.enabled:
            return boxes
        ids = boxes.track_ids.copy()
        for i, raw in enumerate(boxes.track_ids):
            raw = int(raw)
            if raw <= 0:
                continue
            out = self._alias.get(raw, raw)
            if out != raw:
                self._alias_seen[raw] = ts_us
            ids[i] = out
            x1, y1, x2, y2 = (float(v) for v in boxes.xyxy[i])
            sighting = Sighting(ts_us, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
            record = self._records.get(out)
            if record is None:
                record = self._records[out] = _Record(sighting)
            record.points.append(sighting)
        self._forget(ts_us)
        return FrameBoxes(boxes.xyxy, boxes.class_ids, boxes.confidences, ids)

    def sent(self, track_id: int, vector: NDArray[np.float32]) -> None:
        """``track_id`` sent ``vector`` (any reason): what a new track is compared with."""
        record = self._records.get(track_id)
        if record is not None:
            record.vector = vector

    def match(self, track_id: int, vector: NDArray[np.float32]) -> Link | None:
        """The lost track that ``track_id`` (about to send its first-sight ``vector``)
        continues, or None; a link is applied at once (later frames are renamed)."""
        new = self._records.get(track_id)
        if not self.enabled or new is None:
            return None
        start = new.first
        best: tuple[float, Link] | None = None
        for old_id, old in self._records.items():
            if old_id == track_id or old.vector is None:
                continue
            gap = start.ts_us - old.last.ts_us
            if gap <= 0 or gap > self.window_us:  # seen together, or lost too long ago
                continue
            px, py = old.predict(start.ts_us)
            side = max(min(max(old.last.w, old.last.h), max(start.w, start.h)), 1.0)
            offset = math.hypot(start.cx - px, start.cy - py) / side
            cosine = float(np.dot(vector, old.vector))
            if offset > self.max_offset or cosine < self.min_cosine:
                continue
            cost = offset / self.max_offset + (1.0 - cosine) / max(1.0 - self.min_cosine, 1e-6)
            if best is None or cost < best[0]:
                best = (cost, Link(track_id, old_id, offset, cosine, gap * 1e-6, old.vector))
        if best is None:
            return None
        link = best[1]
        self._apply(link, new)
        return link

    def _apply(self, link: Link, new: _Record) -> None:
        for raw, out in list(self._alias.items()):  # earlier ids of the old track: retired
            if out == link.old_id:
                self._alias[raw] = raw + RENAMED_OFFSET
        if link.old_id < RENAMED_OFFSET and link.old_id not in self._alias:
            self._alias[link.old_id] = link.old_id + RENAMED_OFFSET
        self._alias[link.new_id] = link.old_id
        self._alias_seen[link.new_id] = new.last.ts_us
        self._alias_seen.setdefault(link.old_id, new.last.ts_us)
        old = self._records.pop(link.old_id)
        del self._records[link.new_id]
        old.points.extend(new.points)
        self._records[link.old_id] = old
        self.links.append(link)

    def _forget(self, now_us: int) -> None:
        """Drop records of tracks lost too long ago to be continued, and stale renamings."""
        keep = self.window_us + round(MATCH_DELAY_S * 1e6)
        stale = [k for k, r in self._records.items() if now_us - r.last.ts_us > keep]
        for k in stale:
            del self._records[k]
        memory = round(ALIAS_MEMORY_S * 1e6)
        for raw in [r for r, seen in self._alias_seen.items() if now_us - seen > memory]:
            del self._alias_seen[raw]
            self._alias.pop(raw, None)
