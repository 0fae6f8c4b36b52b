"""Track-aware emission: which messages a frame produces, and which crops need embedding.

The paper sends one embedding per crop per frame. Here, per track (Onsu et al. go further with
none of this):

- **first sight**: once a track has been seen for ``confirm_frames`` frames, embed and send;
- **drift**: re-embed at most every ``check_interval_s`` (sooner when the box side changed by
  ``recheck_scale``) and send only if the cosine distance to the last *sent* embedding reaches
  ``drift_threshold``;
- **keyframe**: send anyway once ``keyframe_interval_s`` passed since the last send;
- **track summary**: after ``lost_frames`` unseen frames, a final :class:`TrackSummary` with
  duration, frames, class votes and the box path simplified to ``path_tolerance_px``
  (:mod:`edge.summaries`; tracks never confirmed end silently, counted as flicker); a long
  track also every ``summary_every_s`` (a keyframe summary; the next one continues its path).
  A confirmed track that a re-link (:mod:`edge.relink`) may still continue is held open past
  ``lost_frames`` until none can (:meth:`EmissionPolicy._relinkable`);
- **counts** (optional, off by default: the cloud derives objects in view from the tracks): a
  :class:`FrameCounts` every ``counts_every_frames`` frames (skipped when unchanged if
  ``counts_on_change``), and all boxes as :class:`Detections` every ``detections_every_frames``.

Under uplink pressure the rate controller lowers :attr:`EmissionPolicy.chattiness` below 1:
drift checks, keyframes, keyframe summaries, counts and boxes are then spaced out by
``1 / chattiness`` (first sightings and final summaries are never held back).

The policy is sans-IO and thread-safe: the detection thread calls :meth:`observe`, the encoder
thread :meth:`on_embedding` / :meth:`on_skipped`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edge.config import PolicyConfig
from edge.detect import FrameBoxes
from edge.relink import MATCH_DELAY_S, Relinker
from edge.summaries import summary_path
from shared.geometry import Box
from shared.limits import MAX_DETECTIONS
from shared.messages import Detections, EmitReason, FrameCounts, Message, TrackSummary
from shared.paths import TimedBox

#: Boxes a track buffers at most between summaries (about 3 minutes at 25 fps): a longer
#: stretch is summarised early, so memory stays bounded with ``summary_every_s`` 0.
MAX_BUFFERED_POINTS = 4_096


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """A crop of ``track_id`` in the frame at ``capture_ts_us`` that the policy wants embedded."""

    track_id: int
    reason: EmitReason  # FIRST_SIGHT, KEYFRAME, or DRIFT (a check: sent only if drifted)
    capture_ts_us: int
    box_px: tuple[float, float, float, float]
    box: Box
    class_id: int
    confidence: float


@dataclass
class _Track:
    track_id: int
    first_seen_us: int
    last_seen_us: int
    last_index: int
    frames: int = 0
    votes: Counter[int] = field(default_factory=Counter)
    #: Boxes since the last summary (the first is that summary's last point when ``anchored``).
    path: list[TimedBox] = field(default_factory=list)
    anchored: bool = False
    summarised_us: int = 0  # capture time of the last summary (first_seen_us before any)
    sent_vector: NDArray[np.float32] | None = None
    sent_us: int = 0
    checked_us: int = 0
    checked_side: float = 0.0
    pending: bool = False


@dataclass
class PolicyStats:
    tracks_started: int = 0
    tracks_ended: int = 0
    flicker_tracks: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    drift_checks_quiet: int = 0
    skipped: int = 0
    boxes_truncated: int = 0  # frames with more boxes than one Detections message holds
    keyframe_summaries: int = 0  # TrackSummary messages of tracks still in view
    relinked: int = 0  # new tracks continuing a just-lost one (edge/relink.py): no first sight


def _side(box: tuple[float, float, float, float]) -> float:
    return max(box[2] - box[0], box[3] - box[1], 1.0)


class EmissionPolicy:
    def __init__(self, config: PolicyConfig, camera: str) -> None:
        self.config = config
        self.camera = camera
        self.stats = PolicyStats()
        self._tracks: dict[int, _Track] = {}
        self._frames = 0
        self._last_counts: dict[int, int] | None = None
        self._frame_size = (1, 1)  # px, of the last observed frame (for the path tolerance)
        self._lock = threading.Lock()
        self.chattiness = 1.0  # set by the uplink's rate controller, in (0, 1]
        self.relinker = Relinker(config)

    def _stretch(self) -> float:
        return 1.0 / min(max(self.chattiness, 1e-3), 1.0)

    @property
    def active_tracks(self) -> int:
        return len(self._tracks)

    def observe(
        self, index: int, capture_ts_us: int, width: int, height: int, boxes: FrameBoxes
    ) -> tuple[list[Message], list[EmbedRequest]]:
        """Messages this frame produces now, and crops to embed (in box order)."""
        messages: list[Message] = []
        requests: list[EmbedRequest] = []
        with self._lock:
            boxes = self.relinker.rename(boxes, capture_ts_us)
            self._frames += 1
            self._frame_size = (width, height)
            for i in range(len(boxes)):
                tid = int(boxes.track_ids[i])
                if tid <= 0:
                    continue
                px = tuple(float(v) for v in boxes.xyxy[i])
                box_px = (px[0], px[1], px[2], px[3])
                box = Box.from_pixels(*box_px, width=width, height=height)
                cls, conf = int(boxes.class_ids[i]), float(boxes.confidences[i])
                track = self._tracks.get(tid)
                if track is None:
                    track = self._tracks[tid] = _Track(tid, capture_ts_us, capture_ts_us, index)
                    track.summarised_us = capture_ts_us
                    self.stats.tracks_started += 1
                track.frames += 1
                track.last_seen_us, track.last_index = capture_ts_us, index
                track.votes[cls] += 1
                self._add_point(track, TimedBox(capture_ts_us, box))
                if self._summary_due(track, capture_ts_us):
                    messages.append(self._summary(track, final=False))
                reason = self._due(track, capture_ts_us, _side(box_px))
                if reason is not None:
                    track.pending = True
                    self.stats.requests[reason.name] += 1
                    requests.append(
                        EmbedRequest(tid, reason, capture_ts_us, box_px, box, cls, min(conf, 1.0))
                    )
            messages.extend(self._end_lost(index, capture_ts_us))
        messages.extend(self._counts(boxes, width, height))
        return messages, requests

    def _due(self, track: _Track, now: int, side: float) -> EmitReason | None:
        c = self.config
        if track.pending:
            return None
        if track.sent_vector is None:
            return EmitReason.FIRST_SIGHT if track.frames >= c.confirm_frames else None
        stretch = self._stretch()
        if now - track.sent_us >= c.keyframe_interval_s * 1e6 * stretch:
            return EmitReason.KEYFRAME
        ratio = side / track.checked_side if track.checked_side else 1.0
        if now - track.checked_us >= c.check_interval_s * 1e6 * stretch or not (
            1.0 / c.recheck_scale < ratio < c.recheck_scale
        ):
            return EmitReason.DRIFT
        return None

    def _add_point(self, track: _Track, point: TimedBox) -> None:
        track.path.append(point)

    def _summary_due(self, track: _Track, now: int) -> bool:
        """A keyframe summary of a confirmed track: ``summary_every_s`` (stretched under rate
        pressure) passed since its last one, or its buffer is full."""
        if track.sent_vector is None:
            return False
        every = self.config.summary_every_s * 1e6 * self._stretch()
        return bool(every and now - track.summarised_us >= every) or (
            len(track.path) >= MAX_BUFFERED_POINTS
        )

    def _summary(self, track: _Track, final: bool) -> TrackSummary:
        """The track's summary; its last path point becomes the next summary's anchor."""
        c = self.config
        width, height = self._frame_size
        path = summary_path(
            track.path,
            track.first_seen_us,
            anchored=track.anchored,
            tolerance_px=c.path_tolerance_px,
            grid=c.path_grid,
            width=width,
            height=height,
        )
        if not final:
            self.stats.keyframe_summaries += 1
            track.path, track.anchored = track.path[-1:], True
            track.summarised_us = track.last_seen_us
        return TrackSummary(
            self.camera,
            track.track_id,
            track.first_seen_us,
            track.last_seen_us,
            track.frames,
            dict(track.votes),
            final,
            path,
        )

    def on_embedding(self, request: EmbedRequest, vector: NDArray[np.float32]) -> bool:
        """Record an embedding; True when it must be sent (drift checks may stay quiet)."""
        with self._lock:
            track = self._tracks.get(request.track_id)
            send = True
            if track is not None:
                track.pending = False
                track.checked_us = request.capture_ts_us
                track.checked_side = _side(request.box_px)
                if request.reason is EmitReason.DRIFT and track.sent_vector is not None:
                    distance = 1.0 - float(np.dot(vector, track.sent_vector))
                    send = distance >= self.config.drift_threshold
                if request.reason is EmitReason.FIRST_SIGHT and self._relink(track, vector):
                    return False
                if send:
                    self.relinker.sent(track.track_id, vector)
                    track.sent_vector = vector
                    track.sent_us = request.capture_ts_us
            if send:
                self.stats.sent[request.reason.name] += 1
            else:
                self.stats.drift_checks_quiet += 1
            return send

    def _relink(self, track: _Track, vector: NDArray[np.float32]) -> bool:
        """Continue a just-lost track with ``track`` if they agree (edge/relink.py)."""
        link = self.relinker.match(track.track_id, vector)
        if link is None:
            return False
        self.stats.relinked += 1
        del self._tracks[track.track_id]
        old = self._tracks.get(link.old_id)
        if old is None:  # already ended (only by flush(): lost tracks are held while a link
            # may come, _relinkable): reopened under its id, a second track at the cloud
            track.track_id, track.sent_vector = link.old_id, link.old_vector
            track.sent_us = track.checked_us
            self._tracks[link.old_id] = track
            return True
        old.frames += track.frames
        old.votes.update(track.votes)
        old.last_seen_us, old.last_index = track.last_seen_us, track.last_index
        for box in track.path:
            self._add_point(old, box)
        return True

    def on_skipped(self, request: EmbedRequest) -> None:
        """The encoder could not take this request; the track will ask again later."""
        with self._lock:
            self.stats.skipped += 1
            track = self._tracks.get(request.track_id)
            if track is not None:
                track.pending = False

    def _end_lost(self, index: int, now_us: int) -> list[Message]:
        lost = [
            t
            for t in self._tracks.values()
            if index - t.last_index > self.config.lost_frames and not self._relinkable(t, now_us)
        ]
        return [m for t in lost if (m := self._end(t)) is not None]

    def _relinkable(self, track: _Track, now_us: int) -> bool:
        """Whether a re-link may still continue this lost, confirmed track (edge/relink.py).

        Such a track is held, not ended: an ended track that a re-link reopens is a second
        track at the cloud (which continues an ended track only inside its span), each with
        half the frames and class votes. It may be continued while a new track may still start
        within ``relink_window_s`` of its last sighting, then while a track that did has not
        sent its first sight (the relinker's decision), and never once the relinker forgot it
        (``relink_window_s`` + ``MATCH_DELAY_S``)."""
        relinker = self.relinker
        if not relinker.enabled or track.sent_vector is None:  # no candidate without a vector
            return False
        lost_us = now_us - track.last_seen_us
        if lost_us > relinker.window_us + round(MATCH_DELAY_S * 1e6):
            return False
        if lost_us <= relinker.window_us:
            return True
        until = track.last_seen_us + relinker.window_us
        return any(
            t.sent_vector is None and track.last_seen_us < t.first_seen_us <= until
            for t in self._tracks.values()
        )

    def _end(self, track: _Track) -> TrackSummary | None:
        del self._tracks[track.track_id]
        if track.sent_vector is None and track.frames < self.config.confirm_frames:
            self.stats.flicker_tracks += 1
            return None
        self.stats.tracks_ended += 1
        return self._summary(track, final=True)

    def flush(self) -> list[Message]:
        """End every open track (at shutdown or the end of a stream)."""
        with self._lock:
            return [m for t in list(self._tracks.values()) if (m := self._end(t)) is not None]

    def _counts(self, boxes: FrameBoxes, width: int, height: int) -> list[Message]:
        c = self.config
        out: list[Message] = []
        n = self._frames
        stretch = self._stretch()
        counts_every = round(c.counts_every_frames * stretch)
        boxes_every = round(c.detections_every_frames * stretch)
        if counts_every and n % counts_every == 0:
            counts = dict(Counter(int(v) for v in boxes.class_ids))
            if not (c.counts_on_change and counts == self._last_counts):
                out.append(FrameCounts(self.camera, counts))
                self._last_counts = counts
        if boxes_every and n % boxes_every == 0 and len(boxes):
            if len(boxes) > MAX_DETECTIONS:  # a crowded frame: keep the most confident boxes
                keep = np.argsort(-boxes.confidences, kind="stable")[:MAX_DETECTIONS]
                boxes = FrameBoxes(
                    boxes.xyxy[keep],
                    boxes.class_ids[keep],
                    boxes.confidences[keep],
                    boxes.track_ids[keep],
                )
                self.stats.boxes_truncated += 1
            out.append(
                Detections(
                    self.camera,
                    tuple(
                        Box.from_pixels(
                            float(b[0]), float(b[1]), float(b[2]), float(b[3]), width, height
                        )
                        for b in boxes.xyxy
                    ),
                    tuple(int(v) for v in boxes.class_ids),
                    tuple(min(float(v), 1.0) for v in boxes.confidences),
                    tuple(int(v) for v in boxes.track_ids),
                )
            )
        return out
