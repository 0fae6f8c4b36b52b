"""Fidelity of a payload strategy: what the cloud knows from the messages it sent, measured
against what the edge itself saw at full rate on the same frames.

The reference is the :class:`~sim.measure.Recording`'s RoIs: every tracked box (track id > 0)
of every frame, as the edge's detector and tracker produced it, under the ids the preset's
policy gave them (a new tracker id it re-linked to a just-lost track counts as that track).
The estimate is rebuilt only from the messages the strategy put on the wire
(:class:`CloudView`, one reader per message type; a message a strategy did not send never
reaches it). Four measures:

- **objects in view** per class per 10 s window: per window, the mean over its frames of the
  tracks in view, each in its majority class. A track is in view from its first to its last
  sighting (the tracker bridges frames where the detector missed the object; so does the
  cloud's span). Reference: the edge's tracks at full rate; estimate: the tracks the cloud
  knows, with the span and class it knows. Error: ``sum |est - ref| / sum ref`` over every
  (window, class) pair, a fraction (0.05 = 5 %); a window-level sum, so rare classes and
  empty windows cannot blow it up;
- **confirmed tracks** per class: the reference's tracks seen in at least ``min_track_frames``
  frames (shorter ones are flicker that every emission policy drops) against the tracks the
  cloud knows, per majority class; exact or not, with both counts;
- **path RMSE**: for every frame of every reference track the cloud knows, the distance between
  the observed box centre and the centre the cloud interpolates at that time (linear in time
  between its known points, held constant before the first and after the last), as the root of
  the mean squared distance in pixels, in percent of the frame width. Frames of tracks the cloud
  never heard of are counted apart (``path_unknown_frames``), not folded in;
- **same-track recall@10 ratio** (:mod:`sim.track_recall`): whether the cloud's index (the
  embeddings the strategy sent, decoded) finds a road user again, as a ratio to the same search
  with the encoder's f32 vectors of the same crops: with fresh sightings (the edge's own
  full-rate crops, ``track_r10_ratio``) and with the sent embeddings themselves
  (``stored_r10_ratio``, undefined when no track has two sent embeddings >= 1 s apart).

Known points of a track: boxes with a capture time (``Detections``, ``Embedding``, the path
points of a ``TrackSummary``) and the sampled path of a ``TrackEnd``, whose boxes carry no
times: they are spread evenly over the track's span and used only for tracks with fewer than
two timed points. Between points the box is :func:`shared.paths.boxes_at`'s (linear in time,
held outside), as the cloud interpolates it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from shared.geometry import Box
from shared.messages import Detections, Embedding, Message, TrackEnd, TrackSummary
from shared.paths import TimedBox, boxes_at
from sim.measure import RoI
from sim.track_recall import NONE, Queries, Recall, SentVector, fresh_recall, stored_recall

WINDOW_S: Final = 10.0
"""Objects-in-view windows (s of video)."""
MIN_TRACK_FRAMES: Final = 3
"""Reference tracks shorter than this are flicker (the edge's default ``confirm_frames``)."""

F32 = NDArray[np.float32]


@dataclass
class KnownTrack:
    """What the cloud knows of one track: timed centres, untimed path centres, span, votes."""

    track_id: int
    timed: list[TimedBox] = field(default_factory=list)  # t_us after the first frame
    untimed: list[Box] = field(default_factory=list)  # a TrackEnd's path
    span: tuple[float, float] | None = None  # first, last seen (s), from a TrackEnd
    votes: Counter[int] = field(default_factory=Counter)
    classes: Counter[int] = field(default_factory=Counter)  # class of each timed box

    @property
    def class_id(self) -> int:
        counts = self.votes or self.classes
        return max(sorted(counts), key=lambda c: counts[c]) if counts else -1

    def first_last(self) -> tuple[float, float]:
        times = [p.t_us / 1e6 for p in self.timed]
        if self.span is not None:
            times += list(self.span)
        return min(times), max(times)

    def points(self) -> list[TimedBox]:
        """Known boxes in time order (a TrackEnd's untimed path only without two timed ones)."""
        pts = list(self.timed)
        if len(pts) < 2 and self.untimed and self.span is not None:
            a, b = (round(x * 1e6) for x in self.span)
            n = len(self.untimed)
            steps = [a + (b - a) * i // (n - 1) for i in range(n)] if n > 1 else [a]
            pts += [TimedBox(t, box) for t, box in zip(steps, self.untimed, strict=True)]
        return sorted(pts, key=lambda p: p.t_us)


class CloudView:
    """What the cloud knows from one strategy's messages (times in s of video; ``t0_us`` is the
    capture time of the first frame, to place a ``TrackEnd``'s absolute times)."""

    def __init__(self, t0_us: int) -> None:
        self.t0_us = t0_us
        self.tracks: dict[int, KnownTrack] = {}
        self.vectors: list[SentVector] = []

    def track(self, track_id: int) -> KnownTrack:
        known = self.tracks.get(track_id)
        if known is None:
            known = self.tracks[track_id] = KnownTrack(track_id)
        return known

    def add(
        self,
        t_s: float,
        message: Message,
        decoded: F32 | None = None,
        original: F32 | None = None,
    ) -> None:
        reader = _READERS.get(type(message))
        if reader is not None:
            reader(self, t_s, message, decoded, original)


def _us(t_s: float) -> int:
    return round(t_s * 1e6)


def _read_detections(
    view: CloudView, t_s: float, m: Message, _d: F32 | None, _o: F32 | None
) -> None:
    assert isinstance(m, Detections)
    for box, cls, tid in zip(m.boxes, m.class_ids, m.track_ids, strict=True):
        if tid > 0:
            known = view.track(tid)
            known.timed.append(TimedBox(_us(t_s), box))
            known.classes[cls] += 1


def _read_embedding(
    view: CloudView, t_s: float, m: Message, decoded: F32 | None, original: F32 | None
) -> None:
    assert isinstance(m, Embedding)
    known = view.track(m.track_id)
    known.timed.append(TimedBox(_us(t_s), m.box))
    known.classes[m.class_id] += 1
    if decoded is not None:
        view.vectors.append(SentVector(m.track_id, m.class_id, t_s, decoded, original))


def _read_track_end(view: CloudView, _t: float, m: Message, _d: F32 | None, _o: F32 | None) -> None:
    assert isinstance(m, TrackEnd)
    known = view.track(m.track_id)
    known.span = ((m.first_seen_us - view.t0_us) / 1e6, (m.last_seen_us - view.t0_us) / 1e6)
    known.votes.update(m.class_votes)
    known.untimed = list(m.path)


def _read_track_summary(
    view: CloudView, _t: float, m: Message, _d: F32 | None, _o: F32 | None
) -> None:
    """A summary's path points are timed; a later summary's span and votes supersede."""
    assert isinstance(m, TrackSummary)
    known = view.track(m.track_id)
    first, last = (m.first_seen_us - view.t0_us) / 1e6, (m.last_seen_us - view.t0_us) / 1e6
    if known.span is not None:
        first, last = min(first, known.span[0]), max(last, known.span[1])
    known.span = (first, last)
    known.votes = Counter(m.class_votes)
    for t_us, point in zip(m.point_times_us(), m.path.points, strict=True):
        known.timed.append(TimedBox(t_us - view.t0_us, point.box))


Reader = Callable[[CloudView, float, Message, "F32 | None", "F32 | None"], None]
_READERS: dict[type, Reader] = {
    Detections: _read_detections,
    Embedding: _read_embedding,
    TrackEnd: _read_track_end,
    TrackSummary: _read_track_summary,
}


def view_of(
    messages: Iterable[tuple[float, Message, F32 | None, F32 | None]], t0_us: int
) -> CloudView:
    """The cloud's view of ``(t_s, message, decoded vector, f32 original)`` in sending order."""
    view = CloudView(t0_us)
    for t_s, message, decoded, original in messages:
        view.add(t_s, message, decoded, original)
    return view


@dataclass(frozen=True)
class Fidelity:
    """The four measures of one strategy (see the module docstring); None where not measurable."""

    objects_in_view_error: float | None  # fraction
    path_rmse_pct: float | None  # % of frame width
    fresh: Recall  # fresh sightings searched against the sent embeddings
    stored: Recall  # the sent embeddings searched against each other
    confirmed_reference: dict[int, int]
    confirmed_estimate: dict[int, int]
    path_frames: int
    path_unknown_frames: int
    embeddings: int

    @property
    def track_r10_ratio(self) -> float | None:
        return self.fresh.ratio

    @property
    def confirmed_exact(self) -> bool:
        return self.confirmed_reference == self.confirmed_estimate

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None, digits: int = 4) -> float | None:
            return None if x is None or math.isnan(x) else round(x, digits)

        return {
            "objects_in_view_error": r(self.objects_in_view_error),
            "path_rmse_pct": r(self.path_rmse_pct),
            "track_r10_ratio": r(self.fresh.ratio),
            "track_r10": r(self.fresh.codec),
            "track_r10_f32": r(self.fresh.f32),
            "track_r10_queries": self.fresh.queries,
            "track_r10_skipped": self.fresh.skipped,
            "track_r10_ratio_ci95": None
            if self.fresh.ci95 is None
            else [round(x, 4) for x in self.fresh.ci95],
            "stored_r10_ratio": r(self.stored.ratio),
            "stored_r10": r(self.stored.codec),
            "stored_r10_f32": r(self.stored.f32),
            "stored_r10_queries": self.stored.queries,
            "confirmed_tracks": {
                "exact": self.confirmed_exact,
                "reference": {str(k): v for k, v in sorted(self.confirmed_reference.items())},
                "estimate": {str(k): v for k, v in sorted(self.confirmed_estimate.items())},
            },
            "path_frames": self.path_frames,
            "path_unknown_frames": self.path_unknown_frames,
            "embeddings": self.embeddings,
        }


@dataclass(frozen=True)
class Reference:
    """The edge's full-rate observations: per tracked box its frame time, track, centre."""

    frame_times: NDArray[np.float64]
    width: int
    height: int
    t: NDArray[np.float64]
    track: NDArray[np.int64]
    cx: NDArray[np.float64]
    cy: NDArray[np.float64]
    track_class: dict[int, int]  # majority class of each track
    track_frames: dict[int, int]
    queries: Queries | None = None  # fresh sightings for same-track recall (sim.queries)

    @staticmethod
    def of(
        rois: Iterable[RoI],
        frame_times: Sequence[float],
        width: int,
        height: int,
        track_ids: Sequence[int] | None = None,
        queries: tuple[Sequence[int], F32] | None = None,
    ) -> Reference:
        """``track_ids``: each RoI's id as the edge's policy saw it (after its re-linking,
        edge/relink.py), in the order of ``rois``; the tracker's ids when None. ``queries``:
        rows of ``rois`` and their f32 vectors (:class:`sim.queries.QuerySample`), given the
        same ids."""
        rois = list(rois)
        if track_ids is not None and len(track_ids) != len(rois):
            raise ValueError(f"{len(track_ids)} track ids for {len(rois)} RoIs")
        given = [r.track_id for r in rois] if track_ids is None else list(track_ids)
        fresh = None
        if queries is not None:
            rows, vectors = queries
            if len(rows) != len(vectors):
                raise ValueError(f"{len(vectors)} query vectors for {len(rows)} rows")
            kept = [i for i, row in enumerate(rows) if given[row] > 0]
            fresh = Queries(
                np.asarray(vectors, np.float32)[kept] if kept else np.zeros((0, 0), np.float32),
                np.asarray([given[rows[i]] for i in kept], np.int64),
                np.asarray([rois[rows[i]].t_s for i in kept], np.float64),
            )
        tracked = [r for r, tid in zip(rois, given, strict=True) if tid > 0]
        ids = [tid for tid in given if tid > 0]
        votes: dict[int, Counter[int]] = {}
        for r, tid in zip(tracked, ids, strict=True):
            votes.setdefault(tid, Counter())[r.class_id] += 1
        return Reference(
            np.asarray(frame_times, np.float64),
            width,
            height,
            np.asarray([r.t_s for r in tracked], np.float64),
            np.asarray(ids, np.int64),
            np.asarray([(r.box.x1 + r.box.x2) / 2 for r in tracked], np.float64),
            np.asarray([(r.box.y1 + r.box.y2) / 2 for r in tracked], np.float64),
            {tid: max(sorted(v), key=lambda c: v[c]) for tid, v in votes.items()},
            {tid: sum(v.values()) for tid, v in votes.items()},
            fresh,
        )


def objects_in_view_error(
    ref: Reference, view: CloudView, window_s: float = WINDOW_S
) -> float | None:
    """``sum |est - ref| / sum ref`` of the per-window mean objects in view, over every
    (window, class); None when the reference saw nothing."""
    if not len(ref.frame_times):
        return None
    windows = int(ref.frame_times[-1] // window_s) + 1
    frame_window = (ref.frame_times // window_s).astype(np.int64)
    frames_per = np.bincount(frame_window, minlength=windows).astype(np.float64)
    classes = sorted(set(ref.track_class.values()) | {t.class_id for t in view.tracks.values()})
    col = {c: i for i, c in enumerate(classes)}

    def in_view(spans: Iterable[tuple[float, float, int]]) -> NDArray[np.float64]:
        out = np.zeros((windows, len(classes)))
        for a, b, cls in spans:
            alive = (ref.frame_times >= a - 1e-6) & (ref.frame_times <= b + 1e-6)
            np.add.at(out[:, col[cls]], frame_window[alive], 1.0)
        return out

    truth = in_view(
        (float(ref.t[ref.track == tid].min()), float(ref.t[ref.track == tid].max()), cls)
        for tid, cls in ref.track_class.items()
    )
    est = in_view((*t.first_last(), t.class_id) for t in view.tracks.values())
    per = np.maximum(frames_per, 1.0)[:, None]
    total = float((truth / per).sum())
    if total <= 0:
        return None
    return float(np.abs(est / per - truth / per).sum() / total)


def confirmed_tracks(
    ref: Reference, view: CloudView, min_track_frames: int = MIN_TRACK_FRAMES
) -> tuple[dict[int, int], dict[int, int]]:
    """Tracks per class: the reference's (>= ``min_track_frames`` frames) and the cloud's."""
    truth = Counter(
        ref.track_class[tid] for tid, n in ref.track_frames.items() if n >= min_track_frames
    )
    est = Counter(t.class_id for t in view.tracks.values())
    return dict(truth), dict(est)


def path_rmse(ref: Reference, view: CloudView) -> tuple[float | None, int, int]:
    """(RMSE of the box centre in % of frame width, frames measured, frames of unknown tracks)."""
    se = 0.0
    measured = unknown = 0
    for tid in np.unique(ref.track):
        rows = ref.track == tid
        known = view.tracks.get(int(tid))
        points = known.points() if known is not None else []
        if not points:
            unknown += int(rows.sum())
            continue
        at = boxes_at(points, [_us(t) for t in ref.t[rows]])
        cx = np.asarray([(b.box.x1 + b.box.x2) / 2 for b in at], np.float64)
        cy = np.asarray([(b.box.y1 + b.box.y2) / 2 for b in at], np.float64)
        dx = (cx - ref.cx[rows]) * ref.width
        dy = (cy - ref.cy[rows]) * ref.height
        se += float((dx * dx + dy * dy).sum())
        measured += int(rows.sum())
    if not measured or ref.width <= 0:
        return None, measured, unknown
    return 100.0 * math.sqrt(se / measured) / ref.width, measured, unknown


def measure_fidelity(
    ref: Reference,
    view: CloudView,
    *,
    window_s: float = WINDOW_S,
    min_track_frames: int = MIN_TRACK_FRAMES,
) -> Fidelity:
    """The four measures of what ``view`` knows against ``ref``."""
    truth, est = confirmed_tracks(ref, view, min_track_frames)
    rmse, measured, unknown = path_rmse(ref, view)
    vectors = view.vectors
    return Fidelity(
        objects_in_view_error(ref, view, window_s),
        rmse,
        fresh_recall(vectors, ref.queries) if ref.queries is not None else NONE,
        stored_recall(vectors),
        truth,
        est,
        measured,
        unknown,
        len(view.vectors),
    )
